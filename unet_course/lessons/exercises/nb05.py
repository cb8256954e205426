"""Checks for notebook 05's exercises (training the U-Net, Dice and IoU).

Each ``check_exercise_N`` takes the learner's function and returns a ``Result``. The expected
values come from scikit-learn (``f1_score``, ``jaccard_score``) and a hand-worked example,
never from the reference solutions or from ``unet_course.metrics`` / ``unet_course.train``.
The masks and probabilities are drawn with fixed seeds, so the checks do not depend on the
notebook's variables (or on how well its model trained).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from unet_course.lessons.exercises import Result, run_check

GRID = tuple(float(t) for t in np.round(np.arange(0.05, 0.96, 0.05), 2))


def _mask_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    """``(truth, prediction)`` bool pairs: generated nuclei, shifted or eroded predictions,
    an image with no nucleus and no prediction, and one with no nucleus but a false alarm."""
    from scipy import ndimage

    from unet_course.data import make_nuclei

    _, labels = make_nuclei(4, size=48, seed=5)
    truths = [lab > 0 for lab in labels]
    preds = [np.roll(truths[0], 2, axis=1), ndimage.binary_erosion(truths[1]),
             ndimage.binary_dilation(truths[2], iterations=2), np.zeros_like(truths[3])]
    empty = np.zeros((48, 48), dtype=bool)
    alarm = empty.copy()
    alarm[3:6, 3:6] = True
    return [*zip(truths, preds, strict=True), (empty, empty.copy()), (empty, alarm)]


def check_exercise_1(iou_from_dice: Callable) -> Result:
    """``iou_from_dice(d) -> float``: the IoU of a prediction whose Dice is ``d``."""
    from sklearn.metrics import f1_score, jaccard_score

    pairs = [(t, p) for t, p in _mask_pairs() if t.any() or p.any()]
    cases = [(2 / 3, 1 / 2)]  # the hand-worked 3x3 square shifted by one pixel
    cases += [(f1_score(t.ravel(), p.ravel()), jaccard_score(t.ravel(), p.ravel()))
              for t, p in pairs]
    cases += [(1.0, 1.0), (0.0, 0.0)]

    def verify(got):
        for (dice, iou), value in zip(cases, got, strict=True):
            if not np.isclose(float(value), iou, atol=1e-9):
                return (f"for Dice {dice:.4f} you gave IoU {float(value):.4f}, but scikit-learn's "
                        f"jaccard_score of the same masks is {iou:.4f}; write both with TP, FP, FN")
        return None

    return run_check("Exercise 1", lambda: [iou_from_dice(d) for d, _ in cases], verify)


def check_exercise_2(per_image_dice: Callable) -> Result:
    """``per_image_dice(truths, preds) -> (n,)``: the Dice of each image, 1.0 when both masks
    are empty (the convention of ``f1_score(..., zero_division=1.0)``)."""
    from sklearn.metrics import f1_score

    pairs = _mask_pairs()
    truths, preds = [t for t, _ in pairs], [p for _, p in pairs]
    want = np.array([f1_score(t.ravel(), p.ravel(), zero_division=1.0) for t, p in pairs])

    def verify(got):
        got = np.asarray(got, dtype=float)
        if got.shape != want.shape:
            return (f"expected one Dice per image, shape {want.shape}, got shape {got.shape}; "
                    "is it one number for the whole set?")
        if not np.isfinite(got).all() or not np.isclose(got[-2], 1.0):
            return (f"an image with no nucleus and no prediction should score 1.0, you gave "
                    f"{got[-2]}; nothing to find and nothing found is a perfect answer")
        if not np.allclose(got, want):
            return f"your scores {np.round(got, 3)} differ from scikit-learn's {np.round(want, 3)}"
        return None

    return run_check("Exercise 2", lambda: per_image_dice(truths, preds), verify)


def calibrated_pixels(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pixels with *calibrated* probabilities: ``truth`` is 1 with probability ``prob``.

    ``prob = u**3`` for uniform ``u``, so about one pixel in four is foreground (imbalanced,
    as nuclei are). Returns ``(truth (n,) bool, prob (n,) float64)``.
    """
    rng = np.random.default_rng(seed)
    prob = rng.random(n) ** 3
    return rng.random(n) < prob, prob


def check_exercise_3(f1_optimal_threshold: Callable) -> Result:
    """``f1_optimal_threshold(truth, prob, grid) -> float``: the grid threshold with the
    highest Dice (F1) of ``prob >= t``, found by brute force with scikit-learn here."""
    from sklearn.metrics import accuracy_score, f1_score

    truth, prob = calibrated_pixels()
    f1 = [f1_score(truth, prob >= t) for t in GRID]
    want = GRID[int(np.argmax(f1))]
    best_accuracy = GRID[int(np.argmax([accuracy_score(truth, prob >= t) for t in GRID]))]

    def verify(got):
        got = float(got)
        if got not in GRID:
            return f"expected one of the grid's thresholds {GRID[0]} ... {GRID[-1]}, got {got}"
        if np.isclose(got, best_accuracy) and not np.isclose(got, want):
            return (f"{got} gives the most pixels right (accuracy), not the highest Dice; "
                    "score each threshold with Dice")
        if not np.isclose(got, want):
            return (f"threshold {got} gives Dice {f1[GRID.index(got)]:.3f}; another grid "
                    f"threshold gives {max(f1):.3f}")
        return None

    return run_check("Exercise 3", lambda: f1_optimal_threshold(truth, prob, GRID), verify)
