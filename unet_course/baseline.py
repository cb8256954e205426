"""The classical baseline every U-Net result is shown beside: a global Otsu threshold.

What belongs here: the few lines of scikit-image that a microscopist tries first, as pure
functions, so that notebooks, ``evaluate`` and the benchmarks put the same baseline next to
the network on the same images.

- ``to_grey``: one grey plane per image, nuclei bright (bright-field images are flipped).
- ``otsu_mask``: the global Otsu threshold of that plane (Otsu 1979).
- ``otsu_instances``: the mask split into nuclei by connected components or by a
  distance-transform watershed (``postprocess.label_instances``).
- ``baseline_scores``: pixel Dice / IoU and the Data Science Bowl 2018 instance score of both
  pipelines over a set of images.
- ``classical_instances``: the pipeline a CellProfiler user builds in five minutes: uneven
  light subtracted, Otsu, holes filled, specks removed, smoothed-distance watershed;
  ``tune_classical`` chooses its few settings on validation slides, as the U-Net's
  post-processing is chosen, and scores it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

POLARITIES = ("auto", "bright", "dark")
PIPELINES = ("otsu_components", "otsu_watershed")


def to_grey(image: Any, polarity: str = "auto") -> np.ndarray:
    """One float64 grey plane in which nuclei are bright.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array of real numbers (any dtype). Three channels
            are weighted as ``skimage.color.rgb2gray`` weights them (0.2125 R + 0.7154 G +
            0.0721 B, the luminance of ITU-R BT.709); other channel counts are averaged.
        polarity: ``"bright"`` (nuclei brighter than background: fluorescence), ``"dark"``
            (nuclei darker: bright-field, the plane is negated) or ``"auto"``: dark when the
            median pixel lies in the upper half of the image's range, as in a bright-field
            slide where most of the field is lit background.

    Returns:
        ``(H, W)`` float64.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or min(image.shape[:2], default=0) < 1:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
        raise TypeError(f"image must hold real numbers, got dtype {image.dtype}")
    if polarity not in POLARITIES:
        raise ValueError(f"polarity must be one of {POLARITIES}, got {polarity!r}")
    grey = image.astype(np.float64)
    if grey.ndim == 3:
        weights = np.array([0.2125, 0.7154, 0.0721]) if grey.shape[-1] == 3 else None
        grey = grey @ weights if weights is not None else grey.mean(axis=-1)
    if polarity == "auto":
        low, high = grey.min(), grey.max()
        polarity = "dark" if np.median(grey) > (low + high) / 2 else "bright"
    return -grey if polarity == "dark" else grey


def otsu_mask(image: Any, polarity: str = "auto") -> np.ndarray:
    """Foreground where the grey plane (``to_grey``) lies above its global Otsu threshold.

    Returns ``(H, W)`` bool; all False for a flat image (Otsu has nothing to split).
    """
    from skimage.filters import threshold_otsu

    grey = to_grey(image, polarity)
    if grey.min() == grey.max():
        return np.zeros(grey.shape, dtype=bool)
    return grey > threshold_otsu(grey)


def otsu_instances(image: Any, method: str = "watershed", polarity: str = "auto") -> np.ndarray:
    """Nuclei from the Otsu mask: ``"components"`` (each connected region is one nucleus) or
    ``"watershed"`` (split at the necks of the distance transform, as ``label_instances``).

    Returns ``(H, W)`` int32 labels, 0 = background.
    """
    from unet_course.postprocess import label_instances

    return label_instances(otsu_mask(image, polarity).astype(np.float32), 0.5, method)


def baseline_scores(images: Sequence[Any], labels: Sequence[np.ndarray],
                    polarity: str = "auto") -> dict[str, dict[str, float]]:
    """Score both Otsu pipelines on a set of images with true instance labels.

    Pixel Dice and IoU add the counts of all images up before dividing (as
    ``evaluate.pixel_scores``); the instance score is the mean of the per-image Data Science Bowl
    2018 scores (``scoring.dsb_score_dataset``).

    Returns:
        ``{"otsu_components": {"dice", "iou", "dsb_map"}, "otsu_watershed": {...}}``.
    """
    from unet_course.postprocess import label_instances
    from unet_course.scoring import dsb_score_dataset

    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"expected as many images as label maps (>= 1), got {len(images)} "
                         f"and {len(labels)}")
    masks = [otsu_mask(image, polarity) for image in images]
    tp = sum(int(np.sum(m & (t > 0))) for m, t in zip(masks, labels, strict=True))
    union = sum(int(np.sum(m | (t > 0))) for m, t in zip(masks, labels, strict=True))
    dice = 2 * tp / (tp + union) if union else 1.0
    iou = tp / union if union else 1.0
    scores = {}
    for pipeline in PIPELINES:
        method = pipeline.split("_")[1]
        found = [label_instances(m.astype(np.float32), 0.5, method) for m in masks]
        scores[pipeline] = {"dice": dice, "iou": iou,
                            "dsb_map": dsb_score_dataset(list(labels), found)}
    return scores


CLASSICAL_GRID = {
    "background": (0.0, 30.0),
    "method": ("components", "watershed"),
    "smooth": (1.0, 2.0, 4.0),
    "min_distance": (3, 7),
    "min_size": (10, 30, 60),
}
CLASSICAL_DEFAULT = {"background": 30.0, "method": "watershed", "smooth": 2.0,
                     "min_distance": 3, "min_size": 30}  # where no validation slides chose
MAX_TUNE_IMAGES = 24  # validation slides the classical settings are chosen on


def classical_mask(image: Any, background: float = 0.0, polarity: str = "auto") -> np.ndarray:
    """Otsu's foreground of the grey plane (``to_grey``) after the uneven light is taken
    away, with holes filled.

    Args:
        background: width in pixels of the Gaussian that estimates the background light,
            subtracted before thresholding (0 = none).

    Returns ``(H, W)`` bool.
    """
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    if not (np.isfinite(background) and background >= 0):
        raise ValueError(f"background must be a finite number >= 0, got {background!r}")
    grey = to_grey(image, polarity)
    if background:
        grey = grey - ndi.gaussian_filter(grey, background)
    if grey.min() == grey.max():
        return np.zeros(grey.shape, dtype=bool)
    return ndi.binary_fill_holes(grey > threshold_otsu(grey))


def classical_instances(image: Any, background: float = 0.0, method: str = "watershed",
                        smooth: float = 2.0, min_distance: int = 3, min_size: int = 10,
                        polarity: str = "auto") -> np.ndarray:
    """Nuclei by the classical pipeline: ``classical_mask``, then connected components or a
    watershed on the distance transform smoothed by a Gaussian of width ``smooth``, seeds at
    least ``min_distance`` apart, objects under ``min_size`` pixels dropped
    (``postprocess.label_instances``).

    Returns ``(H, W)`` int32 labels, 0 = background.
    """
    from unet_course.postprocess import label_instances

    mask = classical_mask(image, background, polarity).astype(np.float32)
    return label_instances(mask, 0.5, method, smooth=smooth, min_distance=min_distance,
                           min_size=min_size)


def tune_classical(images: Sequence[Any], labels: Sequence[np.ndarray],
                   grid: dict | None = None) -> dict:
    """The classical pipeline's settings with the best instance score on these slides.

    Call it with *validation* slides. The settings are chosen on at most
    ``MAX_TUNE_IMAGES`` of them (the first ones) from ``grid`` (default ``CLASSICAL_GRID``;
    its plain-Otsu corner is ``otsu_instances``), then scored on all of them.

    Returns ``{"settings": {...}, "dsb_map", "dice", "iou"}``: the keyword arguments of
    ``classical_instances`` and the scores over all ``images`` (pixel counts summed).
    """
    from unet_course.postprocess import label_instances, remove_small
    from unet_course.scoring import dsb_score_dataset

    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"expected as many images as label maps (>= 1), got {len(images)} "
                         f"and {len(labels)}")
    grid = {**CLASSICAL_GRID, **(grid or {})}
    truth = [np.asarray(t) for t in labels[:MAX_TUNE_IMAGES]]
    best, best_score = None, -1.0
    for background in grid["background"]:
        masks = [classical_mask(im, background).astype(np.float32)
                 for im in images[:MAX_TUNE_IMAGES]]
        for method in grid["method"]:
            ways = [(s, d) for s in grid["smooth"] for d in grid["min_distance"]]
            for smooth, distance in ways if method == "watershed" else ways[:1]:
                found = [label_instances(m, 0.5, method, smooth=smooth, min_distance=distance,
                                         min_size=0) for m in masks]
                for size in grid["min_size"]:  # the same labels, small objects then dropped
                    score = dsb_score_dataset(truth, [remove_small(f, size) for f in found])
                    if score > best_score + 1e-9:
                        best_score = score
                        best = {"background": float(background), "method": method,
                                "smooth": float(smooth), "min_distance": int(distance),
                                "min_size": int(size)}
    return {"settings": best, **classical_scores(images, labels, best)}


def classical_scores(images: Sequence[Any], labels: Sequence[np.ndarray],
                     settings: dict) -> dict[str, float]:
    """Pixel Dice / IoU (counts summed over images) and the mean instance score of
    ``classical_instances(image, **settings)`` on these slides."""
    from unet_course.scoring import dsb_score_dataset

    found = [classical_instances(im, **settings) for im in images]
    truth = [np.asarray(t) for t in labels]
    tp = sum(int(np.sum((f > 0) & (t > 0))) for f, t in zip(found, truth, strict=True))
    union = sum(int(np.sum((f > 0) | (t > 0))) for f, t in zip(found, truth, strict=True))
    return {"dsb_map": dsb_score_dataset(truth, found),
            "dice": 2 * tp / (tp + union) if union else 1.0,
            "iou": tp / union if union else 1.0}
