"""Notebook 06's exercise checks: a stub is 'not yet', the right answer 'right', and plausible
mistakes 'wrong'."""

import numpy as np
import pytest
from scipy import ndimage

from unet_course import postprocess, scoring
from unet_course.lessons.exercises import nb06


def _stub(*args, **kwargs):
    raise NotImplementedError


def score_at(true_labels, pred_labels, t):
    tp = int((scoring.iou_matrix(true_labels, pred_labels)[0] > t).sum())
    fp, fn = len(np.unique(pred_labels)) - 1 - tp, len(np.unique(true_labels)) - 1 - tp
    return tp / (tp + fp + fn)


def score_at_or_equal(true_labels, pred_labels, t):  # IoU >= t instead of > t
    tp = int((scoring.iou_matrix(true_labels, pred_labels)[0] >= t).sum())
    fp, fn = len(np.unique(pred_labels)) - 1 - tp, len(np.unique(true_labels)) - 1 - tp
    return tp / (tp + fp + fn)


def precision_at(true_labels, pred_labels, t):  # TP / (TP + FP): misses not counted
    tp = int((scoring.iou_matrix(true_labels, pred_labels)[0] > t).sum())
    return tp / (len(np.unique(pred_labels)) - 1)


def score_at_by_max(true_labels, pred_labels, t):  # the largest id taken as the object count
    iou = np.zeros((true_labels.max(), pred_labels.max()))
    for a in range(1, true_labels.max() + 1):
        for b in range(1, pred_labels.max() + 1):
            union = ((true_labels == a) | (pred_labels == b)).sum()
            iou[a - 1, b - 1] = ((true_labels == a) & (pred_labels == b)).sum() / union if union else 0
    tp = int((iou > t).sum())
    return tp / (true_labels.max() + pred_labels.max() - tp)


def _best(labels, probs, candidates):
    scores = {
        d: scoring.dsb_score_dataset(
            labels, [postprocess.label_instances(p, method="watershed", min_distance=d) for p in probs])
        for d in candidates
    }
    return max(scores, key=scores.get)


def choose_min_distance(val_labels, val_probs, candidates):
    return _best(val_labels, val_probs, candidates)


def choose_on_true_masks(val_labels, val_probs, candidates):  # the wrong habit
    return _best(val_labels, [(lab > 0).astype(np.float32) for lab in val_labels], candidates)


def choose_the_smallest(val_labels, val_probs, candidates):
    return min(candidates)


def border_weight(labels, y, x, w0=10, sigma=5):
    n_background = np.count_nonzero(labels == 0)
    d = sorted(ndimage.distance_transform_edt(labels != v)[y, x] for v in np.unique(labels) if v)
    return labels.size / (2 * n_background) + w0 * np.exp(-((d[0] + d[1]) ** 2) / (2 * sigma**2))


def border_weight_without_class_term(labels, y, x, w0=10, sigma=5):
    return border_weight(labels, y, x, w0, sigma) - labels.size / (2 * np.count_nonzero(labels == 0))


def border_weight_nearest_twice(labels, y, x, w0=10, sigma=5):  # 2 d1 instead of d1 + d2
    n_background = np.count_nonzero(labels == 0)
    d1 = min(ndimage.distance_transform_edt(labels != v)[y, x] for v in np.unique(labels) if v)
    return labels.size / (2 * n_background) + w0 * np.exp(-((2 * d1) ** 2) / (2 * sigma**2))


CHECKS = {
    1: (nb06.check_exercise_1, score_at),
    2: (nb06.check_exercise_2, choose_min_distance),
    3: (nb06.check_exercise_3, border_weight),
}


@pytest.mark.parametrize("number", sorted(CHECKS))
def test_a_stub_is_not_yet(number):
    check, _ = CHECKS[number]
    assert check(_stub).status == "not yet"


@pytest.mark.parametrize("number", sorted(CHECKS))
def test_the_right_answer_is_right(number):
    check, right = CHECKS[number]
    result = check(right)
    assert result.right, result


@pytest.mark.parametrize("check, answer, hint", [
    (nb06.check_exercise_1, score_at_or_equal, "strictly above"),
    (nb06.check_exercise_1, precision_at, "FN"),
    (nb06.check_exercise_1, score_at_by_max, "consecutive"),
    (nb06.check_exercise_2, choose_on_true_masks, "true masks"),
    (nb06.check_exercise_2, choose_the_smallest, "another candidate"),
    (nb06.check_exercise_2, lambda *a: 0.43, "candidates"),
    (nb06.check_exercise_3, border_weight_without_class_term, "class weight"),
    (nb06.check_exercise_3, border_weight_nearest_twice, "different"),
])  # fmt: skip
def test_a_plausible_mistake_is_wrong(check, answer, hint):
    result = check(answer)
    assert result.status == "wrong" and hint in result.message, result


def test_the_independent_watershed_equals_the_packaged_one():
    # The check's own SciPy / scikit-image watershed must describe what the notebook teaches.
    labels, probs = nb06.validation_set()
    for d in nb06.CANDIDATES:
        ours = nb06._watershed(probs[0], d)
        theirs = postprocess.label_instances(probs[0], method="watershed", min_distance=d)
        assert np.array_equal(ours > 0, theirs > 0)
        assert ours.max() > 0 and len(np.unique(ours)) - 1 == theirs.max()
