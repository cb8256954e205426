"""Scores: the instance score of the Data Science Bowl 2018, ``dsb_score`` (one image),
``dsb_score_dataset`` (a set) and their pieces ``iou_matrix`` and ``match_counts``; and
``pixel_scores``, pixel Dice and IoU over a set of images (``p >= t`` is foreground).

Label maps are 2-D integer arrays (``label_maps``): 0 is background, every other value is one
object; the values need not be consecutive.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from unet_course.label_maps import check_labels, relabel

DSB_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))
"""The IoU thresholds of the Data Science Bowl 2018 score: 0.50, 0.55, ..., 0.95."""


def _check_label_pair(true_labels: Any, pred_labels: Any) -> tuple[np.ndarray, np.ndarray]:
    t = check_labels(true_labels, "true_labels")
    p = check_labels(pred_labels, "pred_labels")
    if t.shape != p.shape:
        raise ValueError(f"true_labels and pred_labels must have the same shape, got "
                         f"{t.shape} and {p.shape}")
    return t, p


def _check_thresholds(thresholds: Sequence[float]) -> tuple[Fraction, ...]:
    """IoU thresholds as exact fractions (so that IoU = 0.6 is not above a threshold 0.6)."""
    values = tuple(thresholds)
    if not values:
        raise ValueError("thresholds must hold at least one IoU threshold, got none")
    for t in values:
        if isinstance(t, bool) or not isinstance(t, int | float | np.floating | np.integer):
            raise TypeError(f"thresholds must be numbers, got {t!r}")
        if not 0.0 <= float(t) < 1.0:
            raise ValueError(f"IoU thresholds must lie in [0, 1), got {t}")
    return tuple(Fraction(str(float(t))) for t in values)


def _overlaps(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, ...]:
    """The objects and their K overlapping (true, pred) pairs, from the contingency table
    (``skimage.metrics.contingency_table``) of the two maps renumbered 1..n.

    Returns ``(true_ids (n_t,), pred_ids (n_p,), i (K,), j (K,), inter (K,), union (K,))``:
    the original values, 0-based object indices and int64 pixel counts of each pair.
    """
    from skimage.metrics import contingency_table

    (lt, true_ids), (lp, pred_ids) = relabel(t), relabel(p)
    if not t.size:
        empty = np.zeros(0, np.int64)
        return true_ids, pred_ids, empty, empty, empty, empty
    table = contingency_table(lt, lp, sparse_type="array")  # float pixel counts, exact
    true_area = np.asarray(table.sum(axis=1)).astype(np.int64)[1:]
    pred_area = np.asarray(table.sum(axis=0)).astype(np.int64)[1:]
    pairs = table[1:, 1:].tocoo()
    i, j, inter = pairs.row, pairs.col, pairs.data.astype(np.int64)
    return true_ids, pred_ids, i, j, inter, true_area[i] + pred_area[j] - inter


def iou_matrix(true_labels: np.ndarray, pred_labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """IoU of every true object with every predicted object.

    Args:
        true_labels, pred_labels: (H, W) integer label maps of the same shape.

    Returns:
        ``(iou, true_ids, pred_ids)``: ``iou`` (n_true, n_pred) float64 with ``iou[a, b]`` the
        IoU of the objects ``true_ids[a]`` and ``pred_ids[b]`` (ascending, background excluded).
        Raises TypeError / ValueError for bad label maps (``check_labels``) or shapes.
    """
    true_ids, pred_ids, i, j, inter, union = _overlaps(*_check_label_pair(true_labels,
                                                                        pred_labels))
    iou = np.zeros((true_ids.size, pred_ids.size))
    iou[i, j] = inter / union
    return iou, true_ids, pred_ids


def _true_positives(overlaps: tuple[np.ndarray, ...], fractions: tuple[Fraction, ...]):
    """(len(fractions),) int64: the number of one-to-one matches with IoU > t, for each t."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    true_ids, pred_ids, i, j, inter, union = overlaps
    tp = np.zeros(len(fractions), dtype=np.int64)
    for k, f in enumerate(fractions):
        # IoU > t  <=>  inter * den > num * union, exactly: in int64 while the products fit,
        # else in Python integers (0.1 + 0.2 has a denominator of 10**17).
        if union.size and f.denominator > np.iinfo(np.int64).max // int(union.max()):
            inter, union = inter.astype(object), union.astype(object)
        above = np.asarray(inter * f.denominator > f.numerator * union, dtype=bool)
        if f >= Fraction(1, 2):  # matches are unique above IoU 0.5: just count them
            tp[k] = np.count_nonzero(above)
        elif above.any():  # below 0.5 an object can match several: best one-to-one matching
            graph = csr_matrix((np.ones(above.sum()), (i[above], j[above])),
                               (true_ids.size, pred_ids.size))
            tp[k] = np.count_nonzero(maximum_bipartite_matching(graph, perm_type="column") >= 0)
    return tp


def match_counts(true_labels: np.ndarray, pred_labels: np.ndarray,
                 thresholds: Sequence[float] = DSB_THRESHOLDS) -> tuple[np.ndarray, ...]:
    """True positives, false positives and false negatives at each IoU threshold.

    A true and a predicted object match at ``t`` when their IoU is strictly above ``t``; each
    object matches at most one other. For ``t >= 0.5`` matches are unique by themselves (two
    disjoint predictions cannot both cover more than half of one object); below, a maximum
    one-to-one matching (``scipy.sparse.csgraph.maximum_bipartite_matching``) is used.

    Args:
        true_labels, pred_labels: (H, W) integer label maps of the same shape.
        thresholds: IoU thresholds in [0, 1).

    Returns:
        ``(tp, fp, fn)``, each (len(thresholds),) int64: ``fp = n_pred - tp``,
        ``fn = n_true - tp``. Raises TypeError / ValueError for bad label maps or thresholds.
    """
    fractions = _check_thresholds(thresholds)
    overlaps = _overlaps(*_check_label_pair(true_labels, pred_labels))
    tp = _true_positives(overlaps, fractions)
    return tp, overlaps[1].size - tp, overlaps[0].size - tp


def dsb_score(true_labels: np.ndarray, pred_labels: np.ndarray,
              thresholds: Sequence[float] = DSB_THRESHOLDS) -> float:
    """The Data Science Bowl 2018 score of one image, a float in [0, 1]: the mean over the
    thresholds of TP / (TP + FP + FN), with the arguments and matching of ``match_counts``.
    An image with no true and no predicted object scores 1."""
    tp, fp, fn = match_counts(true_labels, pred_labels, thresholds)
    total = tp + fp + fn
    if not total.any():
        return 1.0
    return float(np.mean(tp / total))


def dsb_score_dataset(true_labels: Sequence[np.ndarray] | np.ndarray,
                      pred_labels: Sequence[np.ndarray] | np.ndarray,
                      thresholds: Sequence[float] = DSB_THRESHOLDS,
                      per_image: bool = False) -> float | np.ndarray:
    """The mean of the per-image ``dsb_score`` of a set of images.

    Args:
        true_labels, pred_labels: (n, H, W) integer arrays, or sequences of n (H_i, W_i)
            label maps (each pair of one shape).
        thresholds: IoU thresholds in [0, 1).
        per_image: return the (n,) float64 per-image scores instead of their mean.

    Raises ValueError for different numbers of images, no image, or a pair of different
    shapes (every pair is checked before any is scored).
    """
    if len(true_labels) != len(pred_labels):
        raise ValueError(f"true_labels and pred_labels must hold as many images, got "
                         f"{len(true_labels)} and {len(pred_labels)}")
    if len(true_labels) == 0:
        raise ValueError("true_labels and pred_labels hold no images; expected at least one")
    pairs = [_check_label_pair(t, p) for t, p in zip(true_labels, pred_labels, strict=True)]
    scores = np.array([dsb_score(t, p, thresholds) for t, p in pairs])
    return scores if per_image else float(scores.mean())


def pixel_scores(masks, probs, threshold: float = 0.5) -> dict[str, float]:
    """Pixel Dice and IoU over a whole set of images (counts added up, divided once).

    Args:
        masks: true masks, ``(n, H, W)`` or a list of ``(H_i, W_i)``; nonzero = foreground.
        probs: foreground probabilities of the same shapes (e.g. from ``predict_native``).
        threshold: a pixel is predicted foreground when ``prob >= threshold``.

    Returns:
        ``{"dice", "iou", "tp", "fp", "fn", "images", "threshold"}``; both empty gives 1.0.
    """
    if len(masks) != len(probs):
        raise ValueError(f"got {len(masks)} masks but {len(probs)} probability maps")
    tp = fp = fn = 0
    for mask, prob in zip(masks, probs, strict=True):
        mask, prob = np.asarray(mask), np.asarray(prob)
        if mask.shape != prob.shape:
            raise ValueError(f"mask shape {mask.shape} differs from probability shape {prob.shape}")
        truth, pred = mask > 0, prob >= threshold
        tp += int(np.sum(truth & pred))
        fp += int(np.sum(~truth & pred))
        fn += int(np.sum(truth & ~pred))
    union = tp + fp + fn
    return {
        "dice": 2 * tp / (2 * tp + fp + fn) if union else 1.0,
        "iou": tp / union if union else 1.0,
        "tp": tp, "fp": fp, "fn": fn, "images": len(masks), "threshold": float(threshold),
    }
