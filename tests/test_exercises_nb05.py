"""Notebook 05's exercise checks: a stub is "not yet", a right answer "right", a plausible
wrong answer "wrong"."""

import numpy as np
import pytest

from unet_course.lessons.exercises import nb05


def _stub(*args):
    raise NotImplementedError


def _iou_from_dice(d):
    return d / (2 - d)


def _per_image_dice(truths, preds):
    out = []
    for t, p in zip(truths, preds, strict=True):
        tp, total = np.sum(t & p), np.sum(t) + np.sum(p)
        out.append(2 * tp / total if total else 1.0)
    return np.array(out)


def _f1_threshold(truth, prob, grid):
    def dice(t):
        pred = prob >= t
        return 2 * np.sum(truth & pred) / (np.sum(truth) + np.sum(pred))

    return grid[int(np.argmax([dice(t) for t in grid]))]


def _accuracy_threshold(truth, prob, grid):
    return grid[int(np.argmax([np.mean((prob >= t) == truth) for t in grid]))]


@pytest.mark.parametrize("check, stub, right, wrong", [
    (nb05.check_exercise_1, _stub, _iou_from_dice, lambda d: d / 2),
    (nb05.check_exercise_1, _stub, _iou_from_dice, lambda d: d**2),
    (nb05.check_exercise_2, _stub, _per_image_dice,
     lambda t, p: np.array([2 * np.sum(a & b) / max(np.sum(a) + np.sum(b), 1)
                            for a, b in zip(t, p, strict=True)])),  # empty pair scores 0
    (nb05.check_exercise_2, _stub, _per_image_dice,
     lambda t, p: _per_image_dice([np.concatenate(t)], [np.concatenate(p)])),  # pooled
    (nb05.check_exercise_3, _stub, _f1_threshold, _accuracy_threshold),
    (nb05.check_exercise_3, _stub, _f1_threshold, lambda truth, prob, grid: 0.5),
])
def test_checks_say_not_yet_right_and_wrong(check, stub, right, wrong):
    assert check(stub).status == "not yet"
    assert check(right).status == "right", check(right)
    assert check(wrong).status == "wrong", check(wrong)


def test_threshold_exercise_separates_f1_from_accuracy():
    truth, prob = nb05.calibrated_pixels()
    grid = nb05.GRID
    assert _accuracy_threshold(truth, prob, grid) == 0.5  # calibrated: accuracy wants 0.5
    assert _f1_threshold(truth, prob, grid) < 0.45  # Lipton et al. 2014: F1 wants lower
