"""From probability maps to separate objects, and how such objects are scored.

What belongs here:

- the instance score of the Data Science Bowl 2018 (``dsb_score``, ``dsb_score_dataset``) and
  its pieces (``iou_matrix``, ``match_counts``);
- post-processing that turns a probability map into an instance label map
  (``label_instances``: connected components or a seeded watershed; ``remove_small``);
- training targets that help a network keep touching nuclei apart: the border-weighted map of
  Ronneberger et al. 2015 (``unet_weight_map``, ``class_balance_weights``), touching borders
  cut out of the mask (``separate_touching``) and interior / boundary / background classes
  (``three_class_targets``);
- overlap-tile prediction of images larger than the network's input (``predict_tiled``,
  ``tile_plan``, ``unet_geometry``), and image in, nuclei out (``predict_instances``,
  ``overlay_instances`` for a picture of the result).

Label maps are 2-D integer arrays: 0 is background, every other value is one object; the
values need not be consecutive. Everything here is NumPy / SciPy / scikit-image except the
tiling functions, which call a Keras model.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

DSB_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))
"""The IoU thresholds of the Data Science Bowl 2018 score: 0.50, 0.55, ..., 0.95."""

# A dense (n_true + 1) x (n_pred + 1) joint histogram is used up to this many cells; beyond it
# only the pairs that actually overlap are counted (sorting the foreground pixel pairs).
_DENSE_LIMIT = 1 << 22


# --------------------------------------------------------------------------- input checks
def _check_labels(labels: Any, name: str) -> np.ndarray:
    """Return ``labels`` as a 2-D non-negative integer array, or raise naming ``name``."""
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(labels).__name__}")
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"{name} must be an integer label map (0 = background, 1, 2, ... = objects), "
            f"got dtype {labels.dtype}; label a mask first, e.g. scipy.ndimage.label(mask)[0]"
        )
    if labels.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W), got shape {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{name} must hold labels >= 0, got minimum {labels.min()}")
    return labels


def _check_pair(true_labels: Any, pred_labels: Any) -> tuple[np.ndarray, np.ndarray]:
    t = _check_labels(true_labels, "true_labels")
    p = _check_labels(pred_labels, "pred_labels")
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
    """Relabel to 0, 1, ..., n (0 stays background).

    Returns (relabelled flat int64 (H*W,), old ids (n,), areas (n,) in pixels).
    """
    flat = labels.ravel()
    top = int(flat.max()) if flat.size else 0
    if top <= 4 * flat.size + 1024:  # a lookup table is cheaper than sorting the pixels
        counts = np.bincount(flat, minlength=top + 1)
        counts[0] = 0
        ids = np.flatnonzero(counts)
        if ids.size == top:  # already 1..n: nothing to relabel
            return flat.astype(np.int64), ids, counts[1:]
        lut = np.zeros(top + 1, dtype=np.int64)
        lut[ids] = np.arange(1, ids.size + 1)
        return lut[flat], ids, counts[ids]
    ids, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    if ids[0] == 0:
        return inverse.astype(np.int64), ids[1:], counts[1:]
    return inverse.astype(np.int64) + 1, ids, counts


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
    o = _overlaps(*_check_pair(true_labels, pred_labels))
    iou = np.zeros((o["true_ids"].size, o["pred_ids"].size))
    union = o["true_area"][o["i"]] + o["pred_area"][o["j"]] - o["inter"]
    iou[o["i"], o["j"]] = o["inter"] / union
    return iou, o["true_ids"], o["pred_ids"]


def _true_positives(o: dict[str, np.ndarray], fractions: tuple[Fraction, ...]) -> np.ndarray:
    """Number of one-to-one matches with IoU > t, for each threshold t."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    union = o["true_area"][o["i"]] + o["pred_area"][o["j"]] - o["inter"]
    tp = np.zeros(len(fractions), dtype=np.int64)
    for k, f in enumerate(fractions):
        # IoU > t  <=>  inter * den > num * union, in exact integer arithmetic
        above = o["inter"] * f.denominator > f.numerator * union
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
    o = _overlaps(*_check_pair(true_labels, pred_labels))
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
    pairs = [_check_pair(t, p) for t, p in zip(true_labels, pred_labels, strict=True)]
    scores = np.array([dsb_score(t, p, thresholds) for t, p in pairs])
    return scores if per_image else float(scores.mean())


# --------------------------------------------------------------------------- post-processing
METHODS = ("components", "watershed")


def _check_prob(prob: Any) -> np.ndarray:
    """Return ``prob`` as float32 (H, W) or (H, W, 3), or raise."""
    if not isinstance(prob, np.ndarray):
        raise TypeError(f"prob must be a NumPy array, got {type(prob).__name__}")
    if not np.issubdtype(prob.dtype, np.floating):
        raise TypeError(f"prob must be a float probability map in [0, 1], got dtype {prob.dtype}")
    if prob.ndim == 3 and prob.shape[-1] == 1:
        prob = prob[..., 0]
    if not (prob.ndim == 2 or (prob.ndim == 3 and prob.shape[-1] == 3)):
        raise ValueError(
            "prob must be (H, W) or (H, W, 1) foreground probabilities, or (H, W, 3) "
            f"background / interior / boundary probabilities; got shape {prob.shape}"
        )
    tol = 1e-5  # a float32 softmax may round a hair above 1
    if prob.size and not (np.isfinite(prob).all() and prob.min() >= -tol and prob.max() <= 1 + tol):
        raise ValueError(
            f"prob must hold probabilities in [0, 1], got values in [{prob.min()}, {prob.max()}]"
        )
    return np.clip(prob, 0.0, 1.0).astype(np.float32, copy=False)


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Drop objects of fewer than ``min_size`` pixels and renumber the rest 1..n.

    Args:
        labels: (H, W) integer label map.
        min_size: smallest object kept, in pixels.

    Returns:
        (H, W) int32 label map with consecutive labels, in the order of the old ones.
    """
    labels = _check_labels(labels, "labels")
    areas = np.bincount(labels.ravel())
    keep = areas >= min_size
    keep[0] = False
    lut = np.where(keep, np.cumsum(keep), 0).astype(np.int32)
    return lut[labels]


def _seeds_from_distance(
    mask: np.ndarray, min_distance: int, smooth: float
) -> tuple[np.ndarray, np.ndarray]:
    """Watershed seeds at the maxima of the (smoothed) distance transform of ``mask``.

    Returns (markers (H, W) int32, elevation (H, W) float64 = minus the distance).
    """
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max

    distance = ndi.distance_transform_edt(mask)
    if smooth > 0:  # soften the ridges of a pixelated outline, which give spurious maxima
        distance = ndi.gaussian_filter(distance, smooth)
    components, _ = ndi.label(mask)
    peaks = peak_local_max(
        distance, min_distance=min_distance, labels=components, exclude_border=False
    )
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return markers, -distance


def label_instances(
    prob: np.ndarray,
    threshold: float = 0.5,
    method: str = "components",
    *,
    min_size: int = 10,
    min_distance: int = 3,
    smooth: float = 1.0,
    seed_threshold: float | None = None,
) -> np.ndarray:
    """Turn a probability map into an instance label map.

    - ``"components"``: foreground = ``prob >= threshold`` (the rule of the pixel metrics,
      ``train.pixel_scores``); each 4-connected region is an object.
      Touching nuclei merge into one.
    - ``"watershed"``: the same foreground is flooded from seeds. For a (H, W) map the seeds are
      the maxima of the distance transform (distance of each foreground pixel to the
      background, smoothed by a Gaussian of width ``smooth``) at least ``min_distance`` pixels
      apart, and the flooding runs downhill in distance. For a (H, W, 3) map the seeds are
      the regions where the *interior* probability is at least ``seed_threshold`` (default:
      ``threshold``), flooded over ``1 - interior`` (a marker-controlled watershed, as the
      Data Science Bowl 2018 winners used). An elongated nucleus has one connected interior,
      so it keeps one seed and is not cut.

    Objects smaller than ``min_size`` pixels are dropped in both methods.

    Args:
        prob: (H, W) or (H, W, 1) float foreground probabilities, or (H, W, 3) float
            probabilities of background, interior and boundary (channels in that order).
        threshold: probability from which on (``>=``) a pixel is foreground (or a seed).
        method: ``"components"`` or ``"watershed"``.
        min_size: smallest object kept, in pixels (>= 0).
        min_distance: smallest distance between two distance-transform seeds, in pixels (>= 1).
        smooth: standard deviation in pixels of the Gaussian applied to the distance transform
            before its maxima are found (0 = none).
        seed_threshold: interior probability above which a pixel is a seed ((H, W, 3) maps
            only; default ``threshold``).

    Returns:
        (H, W) int32 label map, 0 = background, objects numbered 1..n.
    """
    prob = _check_prob(prob)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must lie in [0, 1), got {threshold}")
    for name, value, low in (("min_size", min_size, 0), ("min_distance", min_distance, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not (np.isfinite(smooth) and smooth >= 0):
        raise ValueError(f"smooth must be a finite number >= 0, got {smooth}")
    seed_threshold = threshold if seed_threshold is None else seed_threshold
    if not 0.0 <= seed_threshold < 1.0:
        raise ValueError(f"seed_threshold must lie in [0, 1), got {seed_threshold}")
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    three = prob.ndim == 3
    mask = (1.0 - prob[..., 0] if three else prob) >= threshold
    if method == "components":
        labels, _ = ndi.label(mask)
    elif three:
        markers, _ = ndi.label(mask & (prob[..., 1] >= seed_threshold))
        labels = watershed(1.0 - prob[..., 1], markers, mask=mask)
    else:
        markers, elevation = _seeds_from_distance(mask, min_distance, smooth)
        labels = watershed(elevation, markers, mask=mask)
    return remove_small(labels.astype(np.int32, copy=False), min_size)


# --------------------------------------------------------------------------- training targets
def separate_touching(labels: np.ndarray) -> np.ndarray:
    """Cut the borders between touching objects out of a label map.

    A pixel of object ``a`` with an 8-neighbour of another object ``b > 0`` becomes background,
    which leaves a background gap about 2 pixels wide wherever two nuclei touch. This is how
    the paper's targets look (cells separated by background), so that a network can learn the
    gaps and connected components can then tell the nuclei apart.

    Args:
        labels: (H, W) integer label map.

    Returns:
        (H, W) label map of the same dtype with the touching borders set to 0.
    """
    from scipy import ndimage as ndi

    labels = _check_labels(labels, "labels")
    work = labels.astype(np.int64)
    big = int(work.max(initial=0)) + 1  # stands in for background when looking for smaller ids
    higher = ndi.grey_dilation(work, size=(3, 3)) != work
    lower = ndi.grey_erosion(np.where(work > 0, work, big), size=(3, 3), mode="nearest")
    touching = (work > 0) & (higher | (lower != work))
    return np.where(touching, 0, labels).astype(labels.dtype)


def three_class_targets(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """Background / interior / boundary classes from a label map.

    Boundary pixels are the pixels of an object with a 4-neighbour of another label
    (background or another object) — ``skimage.segmentation.find_boundaries(mode="inner")``;
    the other object pixels are interior. Touching nuclei are then separated by two rows of
    boundary, and their interiors are separate connected regions. With ``width=w``, where two
    objects touch, every pixel within ``w`` pixels (a ``(2w+1) x (2w+1)`` window) of the other
    object is boundary too, so touching interiors lie about ``2 w`` pixels apart and survive a
    blurred prediction as separate seeds; the outline against the background stays one pixel,
    so small isolated nuclei keep their interiors.

    Args:
        labels: (H, W) integer label map.
        width: boundary width in pixels (>= 1).

    Returns:
        (H, W) uint8: 0 = background, 1 = interior, 2 = boundary.
    """
    from skimage.segmentation import find_boundaries

    labels = _check_labels(labels, "labels")
    if isinstance(width, bool) or not isinstance(width, int | np.integer) or width < 1:
        raise ValueError(f"width must be an integer >= 1, got {width!r}")
    classes = (labels > 0).astype(np.uint8)
    boundary = find_boundaries(labels, connectivity=1, mode="inner")
    if width > 1:
        from scipy import ndimage as ndi

        work = labels.astype(np.int64)
        big = int(work.max(initial=0)) + 1  # stands in for background when looking for minima
        window = (2 * width + 1, 2 * width + 1)
        higher = ndi.grey_dilation(work, size=window) != work
        lower = ndi.grey_erosion(np.where(work > 0, work, big), size=window, mode="nearest")
        boundary |= (work > 0) & (higher | (lower != work))
    classes[boundary] = 2
    return classes


def class_balance_weights(mask: np.ndarray) -> np.ndarray:
    """The class-balancing term ``w_c`` of the paper's weight map.

    Each class gets weight ``n_pixels / (n_classes * n_pixels_of_that_class)`` (the "balanced"
    rule of scikit-learn's ``compute_class_weight``), so the map averages to 1 and both classes
    carry the same total weight. A mask with a single class gets weight 1 everywhere.

    Args:
        mask: (H, W) bool (or 0/1) foreground mask.

    Returns:
        (H, W) float32.
    """
    mask = np.asarray(mask).astype(bool)
    fg = np.count_nonzero(mask)
    n = mask.size
    if fg in (0, n):
        return np.ones(mask.shape, dtype=np.float32)
    return np.where(mask, n / (2 * fg), n / (2 * (n - fg))).astype(np.float32)


def _two_nearest(labels: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances d1 <= d2 of every pixel to the nearest and second-nearest object.

    One Euclidean distance transform per object, computed only inside the object's bounding
    box grown by ``reach`` pixels; farther than ``reach`` a distance counts as infinite.

    Returns two (H, W) float64 arrays (``inf`` where fewer than 1 / 2 objects are in reach).
    """
    from scipy import ndimage as ndi

    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    r = int(np.ceil(reach))
    for value, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        grown = tuple(
            slice(max(s.start - r, 0), min(s.stop + r, n))
            for s, n in zip(box, labels.shape, strict=True)
        )
        d = ndi.distance_transform_edt(labels[grown] != value)
        d[d > reach] = np.inf
        d2[grown] = np.minimum(d2[grown], np.maximum(d1[grown], d))
        d1[grown] = np.minimum(d1[grown], d)
    return d1, d2


def unet_weight_map(
    labels: np.ndarray,
    w0: float = 10.0,
    sigma: float = 5.0,
    *,
    tolerance: float = 1e-6,
) -> np.ndarray:
    """The per-pixel loss weights of Ronneberger et al. 2015, eq. 2.

    ``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))**2 / (2 * sigma**2))`` where ``w_c`` balances
    the two classes (``class_balance_weights`` of ``labels > 0``) and ``d1``, ``d2`` are the
    distances from pixel ``x`` to the nearest and the second-nearest object. As in the paper's
    use (narrow background gaps between touching cells), the border term is added on
    background pixels only; inside an object ``d1`` would be 0. Give it labels whose touching
    borders are cut out (``separate_touching``) to weight the gaps between touching nuclei.

    Distances beyond the reach where the border term drops below ``tolerance`` are not
    computed (``d2 > sigma * sqrt(2 ln(w0 / tolerance))``), so the result is within
    ``tolerance`` of the exact map at a cost of one small distance transform per object.

    Args:
        labels: (H, W) integer label map, or (n, H, W) (one map per image).
        w0: weight of the border term (>= 0).
        sigma: width of the border term in pixels (> 0).
        tolerance: largest error allowed in the border term (> 0).

    Returns:
        float32 weights of the shape of ``labels``.
    """
    if isinstance(labels, np.ndarray) and labels.ndim == 3:
        return np.stack([unet_weight_map(m, w0, sigma, tolerance=tolerance) for m in labels])
    labels = _check_labels(labels, "labels")
    if not (np.isfinite(w0) and w0 >= 0 and np.isfinite(sigma) and sigma > 0 and tolerance > 0):
        raise ValueError(
            f"expected w0 >= 0, sigma > 0 and tolerance > 0, got w0={w0}, sigma={sigma}, "
            f"tolerance={tolerance}"
        )
    weights = class_balance_weights(labels > 0)
    if w0 == 0 or tolerance >= w0:
        return weights
    reach = sigma * np.sqrt(2.0 * np.log(w0 / tolerance))
    d1, d2 = _two_nearest(labels, reach)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2))
    return (weights + np.where(labels == 0, border, 0.0)).astype(np.float32)


# --------------------------------------------------------------------------- tiled prediction
def unet_geometry(model: Any) -> tuple[int, str]:
    """``(depth, padding)`` of a U-Net: ``unet_course.model.unet_geometry``."""
    from unet_course.model import unet_geometry as geometry

    return geometry(model)


def tile_plan(model: Any, tile: int | None = None, overlap: int | None = None) -> dict[str, int]:
    """How ``predict_tiled`` cuts an image for ``model``, checked before any prediction.

    Returns ``{"tile", "crop", "overlap", "core"}``: the input side of a tile, the pixels the
    network itself trims from each side (0 for ``same`` padding), the output pixels dropped at
    each side, and the side of the part kept from each tile. Raises ValueError when the model
    cannot take ``tile`` (naming the nearest sizes that work) or nothing would be kept.
    """
    from unet_course.model import check_input_size, nearest_valid_sizes, unet_output_size

    depth, padding = unet_geometry(model)
    fixed = model.input_shape[1:3]
    if tile is None:
        tile = fixed[0] if fixed[0] else nearest_valid_sizes(512, max(depth, 1), padding)[1]
    if isinstance(tile, bool) or not isinstance(tile, int | np.integer) or tile < 1:
        raise ValueError(
            f"tile must be a positive integer (the network's input side), got {tile!r}"
        )
    if any(side not in (None, tile) for side in fixed):
        raise ValueError(f"this model takes {fixed} inputs only, got tile={tile}")
    if depth:
        check_input_size(int(tile), depth, padding)  # names the nearest sizes that work
        out = unet_output_size(int(tile), depth, padding)
    else:
        out = int(model.compute_output_shape((1, tile, tile, model.input_shape[-1]))[1])
    crop, step = (tile - out) // 2, 2**depth
    if overlap is None:  # same padding needs context discarded around each tile
        overlap = 0 if crop else -(-(tile // 8) // step) * step
    if isinstance(overlap, bool) or not isinstance(overlap, int | np.integer) or overlap < 0:
        raise ValueError(f"overlap must be an integer >= 0, got {overlap!r}")
    core = (out - 2 * overlap) // step * step
    if core < step:
        raise ValueError(
            f"tile={tile} gives a {out}-pixel output; with overlap={overlap} on each side "
            f"nothing of at least {step} pixels is left to keep: use a larger tile or a "
            "smaller overlap"
        )
    return {"tile": int(tile), "crop": crop, "overlap": int(overlap), "core": core}


def _check_image(image: Any, model: Any) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a NumPy array, got {type(image).__name__}")
    channels = model.input_shape[-1]
    if image.ndim == 2 and channels == 1:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] != channels or min(image.shape[:2]) < 2:
        raise ValueError(
            f"image must be (H, W, {channels}) with H, W >= 2 for this model, got {image.shape}"
        )
    if not (
        np.issubdtype(image.dtype, np.number) and not np.issubdtype(image.dtype, np.complexfloating)
    ):
        raise TypeError(f"image must hold real numbers, got dtype {image.dtype}")
    return image


def predict_tiled(
    model: Any,
    image: np.ndarray,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int = 4,
) -> np.ndarray:
    """Overlap-tile prediction of an image of any size (Ronneberger et al. 2015, Fig. 2).

    The image is mirrored at its borders and cut into ``tile x tile`` inputs placed
    ``core`` pixels apart; from each tile's output only the central ``core x core`` part is
    kept, where ``core`` is the output side minus ``overlap`` pixels on each side, rounded
    down to a multiple of ``2**depth`` (so that every tile pools on the same grid). For an
    unpadded (``valid``) model the output is already smaller than the tile and every kept
    pixel saw its full context, so ``overlap`` can be 0; for a ``same`` model ``overlap``
    discards the pixels near the tile edges, whose context was zero padding.

    The result equals a single pass of the model over the whole (mirror-padded) image, for a
    ``valid`` model exactly and for a ``same`` model wherever ``overlap`` covers the receptive
    field; away from the image border it then equals ``model(image)`` too.

    Args:
        model: a U-Net-like Keras model (``unet_course.model.build_unet``), input
            ``(batch, H, W, C)``, output ``(batch, H', W', k)``.
        image: (H, W, C) (or (H, W) for C = 1) array, scaled as the model expects (it is
            cast to float32, not rescaled). Any H, W >= 2.
        tile: input side of each tile; a size the model accepts (default: the model's fixed
            input size, else the nearest size >= 512 that it accepts).
        overlap: output pixels dropped at each side of each tile (default: 0 for a valid
            model, ``tile // 8`` rounded up to a multiple of ``2**depth`` for a same model).
        batch_size: tiles per forward pass.

    Returns:
        (H, W, k) float32 predictions.
    """
    import keras

    image = _check_image(image, model)
    plan = tile_plan(model, tile, overlap)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    t, core, keep = plan["tile"], plan["core"], plan["overlap"]
    (h, w), before = image.shape[:2], plan["crop"] + plan["overlap"]
    ny, nx = -(-h // core), -(-w // core)
    pads = ((before, (ny - 1) * core + t - h - before), (before, (nx - 1) * core + t - w - before))
    padded = np.pad(image.astype(np.float32), (*pads, (0, 0)), mode="reflect")
    corners = [(i * core, j * core) for i in range(ny) for j in range(nx)]
    result = None
    for start in range(0, len(corners), batch_size):
        batch = corners[start : start + batch_size]
        tiles = np.stack([padded[y : y + t, x : x + t] for y, x in batch])
        pred = keras.ops.convert_to_numpy(model(tiles, training=False)).astype(np.float32)
        if result is None:
            result = np.zeros((ny * core, nx * core, pred.shape[-1]), dtype=np.float32)
        for (y, x0), p in zip(batch, pred, strict=True):
            result[y : y + core, x0 : x0 + core] = p[keep : keep + core, keep : keep + core]
    return result[:h, :w]


def predict_instances(
    model: Any,
    image: np.ndarray,
    method: str = "watershed",
    threshold: float = 0.5,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    min_size: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Instance labels of an image of any size: ``predict_tiled`` then ``label_instances``.

    The model's output decides the post-processing input: 1 channel (sigmoid) is the
    foreground probability, 2 channels (softmax) give it as channel 1, and 3 channels are
    background / interior / boundary probabilities (interior-seeded watershed).

    Args:
        model: a U-Net-like Keras model with 1, 2 or 3 output channels.
        image: (H, W, C) array as the model expects it (see ``predict_tiled``).
        method, threshold, min_size: as in ``label_instances``.
        tile, overlap: as in ``predict_tiled``.

    Returns:
        ``(labels (H, W) int32, probabilities (H, W, k) float32)``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    channels = model.output_shape[-1]
    if channels not in (1, 2, 3):
        raise ValueError(f"expected a model with 1, 2 or 3 output channels, got {channels}")
    prob = predict_tiled(model, image, tile, overlap)
    post = prob[..., 1] if channels == 2 else prob
    labels = label_instances(post, threshold, method, min_size=min_size)
    return labels, prob


def overlay_instances(image: np.ndarray, labels: np.ndarray, alpha: float = 0.35) -> np.ndarray:
    """An RGB picture of ``labels`` over ``image``: each object tinted, its outline in white.

    Args:
        image: (H, W, 3) or (H, W) uint8 (or float in [0, 1]).
        labels: (H, W) integer label map of the same height and width.
        alpha: opacity of the tint.

    Returns:
        (H, W, 3) uint8.
    """
    from skimage.segmentation import find_boundaries

    from unet_course.plotting import label_colormap

    labels = _check_labels(labels, "labels")
    image = np.asarray(image)
    if image.shape[:2] != labels.shape or image.ndim not in (2, 3):
        raise ValueError(f"image {image.shape} and labels {labels.shape} differ in size")
    rgb = image / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    rgb = np.repeat(rgb[..., None], 3, -1) if rgb.ndim == 2 else rgb[..., :3]
    top = int(labels.max(initial=0))
    colours = np.asarray(label_colormap(top)(np.arange(top + 1)))[:, :3]  # the course's colours
    fg = labels > 0
    tinted = rgb.copy()
    tinted[fg] = (1 - alpha) * rgb[fg] + alpha * colours[labels[fg]]
    tinted[find_boundaries(labels, mode="inner")] = 1.0
    return np.round(np.clip(tinted, 0, 1) * 255).astype(np.uint8)
