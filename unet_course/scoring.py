"""Scores: the Data Science Bowl 2018 instance score, ``dsb_score`` (one image),
``dsb_score_dataset`` (a set) and their pieces ``iou_matrix`` and ``match_counts``; and
``pixel_scores``, pixel Dice and IoU over a set of images. Label maps are 2-D integer arrays,
0 = background, every other value one object.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from unet_course.label_maps import check_labels, relabel

DSB_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


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
    """``(true_ids, pred_ids, i, j, inter, union)``: the objects' values and, for each
    overlapping pair, their 0-based indices and int64 pixel counts (a contingency table)."""
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
    """``(iou, true_ids, pred_ids)``: the (n_true, n_pred) float64 IoU of the objects
    ``true_ids[a]`` and ``pred_ids[b]`` of two (H, W) label maps. TypeError / ValueError for
    bad label maps or shapes."""
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
    """``(tp, fp, fn)``, each (len(thresholds),) int64, of two (H, W) label maps: objects
    match one-to-one at ``t`` (in [0, 1)) when their IoU is strictly above ``t`` (a maximum
    matching below 0.5). TypeError / ValueError for bad label maps or thresholds."""
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
    """The mean ``dsb_score`` of n pairs of label maps (or the (n,) scores, ``per_image``).
    ValueError for no image, different counts or a pair of two shapes (all checked first)."""
    if len(true_labels) != len(pred_labels):
        raise ValueError(f"true_labels and pred_labels must hold as many images, got "
                         f"{len(true_labels)} and {len(pred_labels)}")
    if len(true_labels) == 0:
        raise ValueError("true_labels and pred_labels hold no images; expected at least one")
    pairs = [_check_label_pair(t, p) for t, p in zip(true_labels, pred_labels, strict=True)]
    scores = np.array([dsb_score(t, p, thresholds) for t, p in pairs])
    return scores if per_image else float(scores.mean())


def pixel_scores(masks, probs, threshold: float = 0.5) -> dict[str, float]:
    """Pixel Dice and IoU over a set of images, counts added up (``mask > 0`` true,
    ``prob >= threshold`` predicted): ``{"dice", "iou", "tp", "fp", "fn", "images",
    "threshold"}``, 1.0 when both are empty. ValueError for mismatched shapes or counts."""
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
