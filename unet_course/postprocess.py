"""Post-processing: from a probability map to separate objects (an instance label map).

What belongs here: ``label_instances`` (connected components, or a seeded watershed: seeds
from the distance transform of a foreground map, or from the interior channel of a
background / interior / boundary map) and ``remove_small``. The foreground rule is the one of
the pixel metrics: ``prob >= threshold``. Image in, objects out (prediction, then this) is
``predict.predict_instances``; the score of the result is ``scoring``.

Label maps are 2-D integer arrays (``label_maps``), 0 = background. NumPy, SciPy and
scikit-image only.
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
    """Drop objects of fewer than ``min_size`` pixels and renumber the rest 1..n.

    ``skimage.morphology.remove_small_objects`` on the label values as they are (an object is
    one label value, connected or not), then ``label_maps.relabel``.

    Args:
        labels: (H, W) integer label map.
        min_size: smallest object kept, in pixels.

    Returns:
        (H, W) int32 label map with consecutive labels, in the order of the old ones.
    """
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


def _smoothed(interior: np.ndarray, smooth: float) -> np.ndarray:
    from scipy import ndimage as ndi

    interior = np.asarray(interior, dtype=np.float64)
    return ndi.gaussian_filter(interior, smooth) if smooth > 0 else interior


def _h_maxima(smoothed: np.ndarray, contrast: float) -> np.ndarray:
    from skimage.morphology import local_maxima, reconstruction

    lowered = reconstruction(smoothed - contrast, smoothed, method="dilation")
    return local_maxima(lowered, connectivity=2).astype(bool)


def interior_peaks(interior: np.ndarray, contrast: float, smooth: float) -> np.ndarray:
    """The h-maxima (h = ``contrast``) of an ``(H, W)`` interior map smoothed by a Gaussian of
    ``smooth`` pixels: a bool ``(H, W)`` map of the plateaus left after every peak is lowered
    by h (a reconstruction by dilation). Peaks joined by a pass less than h below them share
    one plateau, so they make one seed (``skimage.morphology.h_maxima`` would keep two peaks
    of exactly equal height apart)."""
    return _h_maxima(_smoothed(interior, smooth), contrast)


def _seeds_from_interior(interior: np.ndarray, mask: np.ndarray, seed_threshold: float,
                         contrast: float, smooth: float, peaks: np.ndarray | None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Watershed seeds from a predicted interior map: the connected regions of ``interior >=
    seed_threshold`` (``contrast`` 0), or the ``interior_peaks`` that lie in those regions.

    Returns (markers (H, W) int32, elevation (H, W) = 1 - the (smoothed) interior map).
    """
    from scipy import ndimage as ndi

    seeds = mask & (interior >= seed_threshold)
    if contrast > 0:
        interior = _smoothed(interior, smooth)
        seeds &= _h_maxima(interior, contrast) if peaks is None else peaks
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
    """Turn a probability map into an instance label map.

    - ``"components"``: foreground = ``prob >= threshold`` (the rule of the pixel metrics,
      ``scoring.pixel_scores``); each 4-connected region is an object.
      Touching nuclei merge into one.
    - ``"watershed"``: the same foreground is flooded from seeds. For a (H, W) map the seeds are
      the maxima of the distance transform (distance of each foreground pixel to the
      background, smoothed by a Gaussian of width ``smooth``) at least ``min_distance`` pixels
      apart, and the flooding runs downhill in distance. For a (H, W, 3) map the seeds are
      the regions where the *interior* probability is at least ``seed_threshold`` (default:
      ``threshold``), flooded over ``1 - interior`` (a marker-controlled watershed, as the
      Data Science Bowl 2018 winners used). An elongated nucleus has one connected interior,
      so it keeps one seed and is not cut. With ``seed_contrast`` h > 0 the interior map is
      first smoothed by a Gaussian of width ``smooth`` and a seed is an *h-maximum* of it
      inside those regions: a peak that stands at least h above the lowest pass to any higher
      peak. Two touching nuclei whose predicted interiors are joined by a bridge of lower
      probability then get a seed each, while the shallow ripples inside one nucleus do not.

    Objects smaller than ``min_size`` pixels are dropped in both methods.

    Args:
        prob: (H, W) or (H, W, 1) float foreground probabilities, or (H, W, 3) float
            probabilities of background, interior and boundary (channels in that order).
        threshold: probability from which on (``>=``) a pixel is foreground (or a seed).
        method: ``"components"`` or ``"watershed"``.
        min_size: smallest object kept, in pixels (>= 0).
        min_distance: smallest distance between two distance-transform seeds, in pixels (>= 1).
        smooth: standard deviation in pixels of the Gaussian applied to the distance transform
            (or, with ``seed_contrast`` > 0, to the interior map) before its maxima are found
            (0 = none).
        seed_threshold: interior probability from which on (``>=``) a pixel is a seed ((H, W, 3) maps
            only; default ``threshold``).
        seed_contrast: h of the h-maxima seeds ((H, W, 3) maps only), in [0, 1); 0 = each
            connected region of seed pixels is one seed.
        peaks: ``interior_peaks`` of the interior channel for these ``seed_contrast`` and
            ``smooth``, when already found (a search over the other settings reuses them).

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
    """The ``label_instances`` settings (method ``"watershed"``) with the best mean Data
    Science Bowl 2018 score on these images: call it with *validation* images only.

    Args:
        labels: true ``(H, W)`` label maps; probs: the model's ``(H, W, K)`` maps of them.
        grid: the values to try for each setting (default ``POSTPROCESSING_GRID``; a map
            with no interior channel is seeded from the distance transform instead).

    Returns:
        ``(settings, score)``.
    """
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
