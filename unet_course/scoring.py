"""How separate objects are scored: the instance score of the Data Science Bowl 2018.

What belongs here: ``dsb_score`` (one image) and ``dsb_score_dataset`` (a set of images), and
their pieces: ``iou_matrix`` (the IoU of every true with every predicted object) and
``match_counts`` (one-to-one matches at each IoU threshold). Turning probabilities into
objects is ``postprocess``; scoring a trained model end to end is ``evaluate``.

Label maps are 2-D integer arrays (``label_maps``): 0 is background, every other value is one
object; the values need not be consecutive. NumPy and SciPy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from unet_course.label_maps import check_labels, relabel

DSB_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))
"""The IoU thresholds of the Data Science Bowl 2018 score: 0.50, 0.55, ..., 0.95."""

# A dense (n_true + 1) x (n_pred + 1) joint histogram is used up to this many cells; beyond it
# only the pairs that actually overlap are counted (sorting the foreground pixel pairs).
_DENSE_LIMIT = 1 << 22


def _check_label_pair(true_labels: Any, pred_labels: Any) -> tuple[np.ndarray, np.ndarray]:
    t = check_labels(true_labels, "true_labels")
    p = check_labels(pred_labels, "pred_labels")
    if t.shape != p.shape:
        raise ValueError(
            f"true_labels and pred_labels must have the same shape, got {t.shape} and {p.shape}"
        )
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


# --------------------------------------------------------------------------- overlaps
def _consecutive(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relabel to 0, 1, ..., n (``label_maps.relabel``; 0 stays background).

    Returns (relabelled flat int64 (H*W,), old ids (n,) ascending, areas (n,) in pixels).
    """
    relabelled, ids = relabel(labels)
    flat = relabelled.ravel().astype(np.int64)
    return flat, ids, np.bincount(flat, minlength=ids.size + 1)[1:]


def _overlaps(t: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """Areas of every object and intersections of every overlapping (true, pred) pair.

    Returns a dict with ``true_ids`` (n_t,), ``pred_ids`` (n_p,), ``true_area`` (n_t,),
    ``pred_area`` (n_p,), and for the K overlapping pairs ``i`` (K,), ``j`` (K,) (0-based
    object indices) and ``inter`` (K,) pixel counts. One pass of ``np.bincount`` over the
    pixels: the joint histogram of the two label maps.
    """
    lt, true_ids, true_area = _consecutive(t)
    lp, pred_ids, pred_area = _consecutive(p)
    nt, np_ = true_ids.size, pred_ids.size
    if (nt + 1) * (np_ + 1) <= _DENSE_LIMIT:
        joint = np.bincount(lt * (np_ + 1) + lp, minlength=(nt + 1) * (np_ + 1))
        inter_matrix = joint.reshape(nt + 1, np_ + 1)[1:, 1:]
        i, j = np.nonzero(inter_matrix)
        inter = inter_matrix[i, j]
    else:  # many objects: count only the pairs that occur, by sorting the pair keys
        both = (lt > 0) & (lp > 0)
        keys, inter = np.unique((lt[both] - 1) * np_ + (lp[both] - 1), return_counts=True)
        i, j = np.divmod(keys, np_)
    return {
        "true_ids": true_ids,
        "pred_ids": pred_ids,
        "true_area": true_area,
        "pred_area": pred_area,
        "i": i,
        "j": j,
        "inter": inter.astype(np.int64),
    }


def iou_matrix(true_labels: np.ndarray, pred_labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """IoU of every true object with every predicted object.

    Args:
        true_labels, pred_labels: (H, W) integer label maps, 0 = background.

    Returns:
        ``(iou, true_ids, pred_ids)``: ``iou`` is (n_true, n_pred) float64 with
        ``iou[a, b] = |A ∩ B| / |A ∪ B|`` for the objects labelled ``true_ids[a]`` and
        ``pred_ids[b]`` (both sorted, background excluded).
    """
    o = _overlaps(*_check_label_pair(true_labels, pred_labels))
    iou = np.zeros((o["true_ids"].size, o["pred_ids"].size))
    union = o["true_area"][o["i"]] + o["pred_area"][o["j"]] - o["inter"]
    iou[o["i"], o["j"]] = o["inter"] / union
    return iou, o["true_ids"], o["pred_ids"]


def _true_positives(o: dict[str, np.ndarray], fractions: tuple[Fraction, ...]) -> np.ndarray:
    """Number of one-to-one matches with IoU > t, for each threshold t."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    union = o["true_area"][o["i"]] + o["pred_area"][o["j"]] - o["inter"]
    inter = o["inter"]
    tp = np.zeros(len(fractions), dtype=np.int64)
    for k, f in enumerate(fractions):
        # IoU > t  <=>  inter * den > num * union, in exact integer arithmetic: in int64
        # while the products fit, else in Python's integers (a threshold such as
        # 0.1 + 0.2 = 0.30000000000000004 has a denominator of 10**17).
        if union.size and f.denominator > np.iinfo(np.int64).max // int(union.max()):
            inter, union = inter.astype(object), union.astype(object)
        above = np.asarray(inter * f.denominator > f.numerator * union, dtype=bool)
        if f >= Fraction(1, 2):  # matches are unique above IoU 0.5: just count them
            tp[k] = np.count_nonzero(above)
        elif above.any():  # below 0.5 an object can match several: best one-to-one matching
            shape = (o["true_ids"].size, o["pred_ids"].size)
            graph = csr_matrix((np.ones(above.sum()), (o["i"][above], o["j"][above])), shape)
            tp[k] = np.count_nonzero(maximum_bipartite_matching(graph, perm_type="column") >= 0)
    return tp


def match_counts(
    true_labels: np.ndarray,
    pred_labels: np.ndarray,
    thresholds: Sequence[float] = DSB_THRESHOLDS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, false positives and false negatives at each IoU threshold.

    A true object and a predicted object *match* at threshold ``t`` when their IoU is strictly
    above ``t``; each object matches at most one other. For ``t >= 0.5`` this needs no
    assignment step: if a true object A overlapped two disjoint predictions B and C with IoU
    above 0.5, then ``|A∩B| > |A|/2`` and ``|A∩C| > |A|/2`` (a union is at least as large as A),
    so B and C would share pixels. For ``t < 0.5`` a maximum one-to-one matching is used.

    Args:
        true_labels, pred_labels: (H, W) integer label maps, 0 = background.
        thresholds: IoU thresholds in [0, 1).

    Returns:
        ``(tp, fp, fn)``, each (len(thresholds),) int64: ``fp = n_pred - tp``,
        ``fn = n_true - tp``.
    """
    fractions = _check_thresholds(thresholds)
    o = _overlaps(*_check_label_pair(true_labels, pred_labels))
    tp = _true_positives(o, fractions)
    return tp, o["pred_ids"].size - tp, o["true_ids"].size - tp


def dsb_score(
    true_labels: np.ndarray,
    pred_labels: np.ndarray,
    thresholds: Sequence[float] = DSB_THRESHOLDS,
) -> float:
    """The Data Science Bowl 2018 score of one image.

    ``mean over t of TP(t) / (TP(t) + FP(t) + FN(t))`` for t = 0.50, 0.55, ..., 0.95, with the
    one-to-one matching of ``match_counts`` (a match needs IoU > t). An image with no true and
    no predicted objects scores 1 (nothing to find, nothing wrongly found).

    Args:
        true_labels, pred_labels: (H, W) integer label maps of the same shape, 0 = background.
        thresholds: IoU thresholds in [0, 1).

    Returns:
        The score, a float in [0, 1].
    """
    tp, fp, fn = match_counts(true_labels, pred_labels, thresholds)
    total = tp + fp + fn
    if not total.any():
        return 1.0
    return float(np.mean(tp / total))


def dsb_score_dataset(
    true_labels: Sequence[np.ndarray] | np.ndarray,
    pred_labels: Sequence[np.ndarray] | np.ndarray,
    thresholds: Sequence[float] = DSB_THRESHOLDS,
    per_image: bool = False,
) -> float | np.ndarray:
    """The Data Science Bowl 2018 score of a set of images: the mean of the per-image scores.

    Args:
        true_labels, pred_labels: (n, H, W) integer arrays, or sequences of n (H_i, W_i)
            label maps (sizes may differ between images, not within a pair).
        thresholds: IoU thresholds in [0, 1).
        per_image: return the (n,) float64 array of per-image scores instead of their mean.

    Returns:
        The mean score (float), or the per-image scores.
    """
    if len(true_labels) != len(pred_labels):
        raise ValueError(
            f"true_labels and pred_labels must hold as many images, got {len(true_labels)} "
            f"and {len(pred_labels)}"
        )
    if len(true_labels) == 0:
        raise ValueError("true_labels and pred_labels hold no images; expected at least one")
    pairs = [_check_label_pair(t, p) for t, p in zip(true_labels, pred_labels, strict=True)]
    scores = np.array([dsb_score(t, p, thresholds) for t, p in pairs])
    return scores if per_image else float(scores.mean())
