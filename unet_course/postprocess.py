"""Post-processing: from a probability map to separate objects (an instance label map).

``label_instances`` (connected components, or a seeded watershed) and ``remove_small``; the
foreground rule is that of the pixel metrics, ``prob >= threshold``; ``tune_postprocessing``
picks the watershed settings on validation slides. Label maps are 2-D integer arrays, 0 =
background.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from unet_course.label_maps import check_labels, relabel

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
    """Drop objects (label values, connected or not) of fewer than ``min_size`` pixels and
    renumber the rest 1..n in their old order: an (H, W) int32 label map."""
    import warnings

    from skimage.morphology import remove_small_objects

    labels = check_labels(labels, "labels")
    if labels.size == 0:
        return labels.astype(np.int32)
    with warnings.catch_warnings():  # "only one label was provided": one object is fine here
        warnings.simplefilter("ignore", UserWarning)
        kept = remove_small_objects(labels, max_size=min_size - 1)
    return relabel(kept)[0].astype(np.int32)


def _seeds_from_distance(
    mask: np.ndarray, min_distance: int, smooth: float
) -> tuple[np.ndarray, np.ndarray]:
    """Seeds at the maxima of the smoothed distance transform: (markers, -distance)."""
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


def _smoothed(interior: np.ndarray, smooth: float) -> np.ndarray:
    from scipy import ndimage as ndi

    interior = np.asarray(interior, dtype=np.float64)
    return ndi.gaussian_filter(interior, smooth) if smooth > 0 else interior


def interior_peaks(interior: np.ndarray, contrast: float, smooth: float) -> np.ndarray:
    """Bool ``(H, W)``: the h-maxima (h = ``contrast``) of an interior map smoothed by a
    Gaussian of ``smooth`` pixels, the plateaus left after a reconstruction by dilation of the
    map lowered by h (``skimage.morphology.h_maxima`` would keep equal peaks apart)."""
    from skimage.morphology import local_maxima, reconstruction

    smoothed = _smoothed(interior, smooth)
    lowered = reconstruction(smoothed - contrast, smoothed, method="dilation")
    return local_maxima(lowered, connectivity=2).astype(bool)


def _seeds_from_interior(interior: np.ndarray, mask: np.ndarray, seed_threshold: float,
                         contrast: float, smooth: float, peaks: np.ndarray | None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Watershed seeds: the regions of ``interior >= seed_threshold``, or (``contrast`` > 0)
    the ``interior_peaks`` in them. Returns (markers int32, elevation = 1 - interior)."""
    from scipy import ndimage as ndi

    seeds = mask & (interior >= seed_threshold)
    if contrast > 0:
        seeds &= interior_peaks(interior, contrast, smooth) if peaks is None else peaks
        interior = _smoothed(interior, smooth)
    markers, _ = ndi.label(seeds)
    return markers.astype(np.int32, copy=False), 1.0 - interior


def label_instances(
    prob: np.ndarray,
    threshold: float = 0.5,
    method: str = "components",
    *,
    min_size: int = 10,
    min_distance: int = 3,
    smooth: float = 1.0,
    seed_threshold: float | None = None,
    seed_contrast: float = 0.0,
    peaks: np.ndarray | None = None,
) -> np.ndarray:
    """Turn a probability map into an (H, W) int32 instance label map, objects 1..n.

    Foreground is ``prob >= threshold``. ``"components"``: each 4-connected region is an
    object. ``"watershed"``: the foreground is flooded from seeds; for an (H, W) map the
    maxima, ``min_distance`` apart, of the distance transform smoothed by ``smooth``; for an
    (H, W, 3) background / interior / boundary map the regions of ``interior >=
    seed_threshold`` (default ``threshold``), flooded over ``1 - interior``, or with
    ``seed_contrast`` h > 0 the ``interior_peaks`` in them (``peaks``, if already found for
    this ``seed_contrast`` and ``smooth``). Objects under ``min_size`` pixels are dropped.

    ``prob``: (H, W) or (H, W, 1) float foreground probabilities, or (H, W, 3). Raises
    TypeError / ValueError for a bad map or settings.
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
    if not 0.0 <= seed_contrast < 1.0:
        raise ValueError(f"seed_contrast must lie in [0, 1), got {seed_contrast}")
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    three = prob.ndim == 3
    mask = (1.0 - prob[..., 0] if three else prob) >= threshold
    if method == "components":
        labels, _ = ndi.label(mask)
    elif three:
        markers, elevation = _seeds_from_interior(prob[..., 1], mask, seed_threshold,
                                                  seed_contrast, smooth, peaks)
        labels = watershed(elevation, markers, mask=mask)
    else:
        markers, elevation = _seeds_from_distance(mask, min_distance, smooth)
        labels = watershed(elevation, markers, mask=mask)
    return remove_small(labels.astype(np.int32, copy=False), min_size)


DEFAULT_POSTPROCESSING = {"threshold": 0.5, "seed_threshold": 0.7, "seed_contrast": 0.2,
                          "smooth": 2.0, "min_size": 25}

POSTPROCESSING_GRID = {
    "threshold": (0.3, 0.4, 0.5),
    "seed_threshold": (0.5, 0.7, 0.9),
    "seed_contrast": (0.0, 0.1, 0.2, 0.3),
    "smooth": (2.0,),
    "min_size": (10, 25, 40, 60, 90),
}


def tune_postprocessing(labels, probs, grid: dict | None = None) -> tuple[dict, float]:
    """``(settings, score)``: the ``label_instances`` watershed settings from ``grid`` (default
    ``POSTPROCESSING_GRID``) with the best mean DSB 2018 score of ``probs`` (the model's
    ``(H, W, K)`` maps) against the true ``labels``; give it *validation* images only."""
    from unet_course.scoring import dsb_score_dataset

    three = np.asarray(probs[0]).shape[-1] == 3
    if grid is None:
        grid = dict(POSTPROCESSING_GRID)
        if not three:  # no interior channel, no seeds
            grid.update(seed_threshold=(None,), seed_contrast=(0.0,), smooth=(1.0,))
    sizes = tuple(grid.get("min_size", (0,)))
    others = {key: values for key, values in grid.items() if key != "min_size"}
    peaks = {}  # the h-maxima depend on the contrast and smoothing only: found once each
    best, best_score = None, -1.0
    for values in itertools.product(*others.values()):
        settings = dict(zip(others, values, strict=True))
        contrast, smooth = settings.get("seed_contrast", 0.0), settings.get("smooth", 1.0)
        found = []
        for i, p in enumerate(probs):
            if three and contrast > 0 and (i, contrast, smooth) not in peaks:
                peaks[i, contrast, smooth] = interior_peaks(p[..., 1], contrast, smooth)
            found.append(label_instances(p, method="watershed", min_size=0,
                                         peaks=peaks.get((i, contrast, smooth)), **settings))
        for size in sizes:  # the same flooding, then small objects dropped (that order)
            score = dsb_score_dataset(list(labels), [remove_small(f, size) for f in found])
            if score > best_score + 1e-9:
                best, best_score = {**settings, "min_size": size}, score
    return best, best_score
