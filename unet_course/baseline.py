"""The classical baselines every U-Net result is shown beside: a global Otsu threshold
(``otsu_mask``, ``otsu_instances``, ``baseline_scores``) and the classical pipeline of uneven
light subtracted, Otsu, holes filled, specks removed and a watershed (``classical_instances``),
tuned on validation slides by ``tune_classical``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from unet_course.postprocess import label_instances, remove_small
from unet_course.scoring import dsb_score_dataset, pixel_scores

POLARITIES = ("auto", "bright", "dark")
PIPELINES = ("otsu_components", "otsu_watershed")


def to_grey(image: Any, polarity: str = "auto") -> np.ndarray:
    """``(H, W)`` float64 grey plane of an ``(H, W)`` or ``(H, W, C)`` real image (RGB through
    ``rgb2gray``, else the channels' mean), negated for ``polarity="dark"`` or, with
    ``"auto"``, when the median lies in the upper half of the range. ValueError / TypeError."""
    image = np.asarray(image)
    if image.ndim not in (2, 3) or min(image.shape[:2], default=0) < 1:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
        raise TypeError(f"image must hold real numbers, got dtype {image.dtype}")
    if polarity not in POLARITIES:
        raise ValueError(f"polarity must be one of {POLARITIES}, got {polarity!r}")
    from skimage.color import rgb2gray

    grey = image.astype(np.float64)
    if grey.ndim == 3:
        grey = rgb2gray(grey) if grey.shape[-1] == 3 else grey.mean(axis=-1)
    if polarity == "auto":
        low, high = grey.min(), grey.max()
        polarity = "dark" if np.median(grey) > (low + high) / 2 else "bright"
    return -grey if polarity == "dark" else grey


def otsu_mask(image: Any, polarity: str = "auto") -> np.ndarray:
    """``(H, W)`` bool: ``to_grey`` above its Otsu threshold (all False for a flat image)."""
    from skimage.filters import threshold_otsu

    grey = to_grey(image, polarity)
    if grey.min() == grey.max():
        return np.zeros(grey.shape, dtype=bool)
    return grey > threshold_otsu(grey)


def otsu_instances(image: Any, method: str = "watershed", polarity: str = "auto") -> np.ndarray:
    """``(H, W)`` int32 labels of the Otsu mask by ``postprocess.label_instances``
    (``"components"`` or ``"watershed"``)."""
    return label_instances(otsu_mask(image, polarity).astype(np.float32), 0.5, method)


def _check_pairs(images: Sequence, labels: Sequence) -> None:
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"expected as many images as label maps (>= 1), got {len(images)} "
                         f"and {len(labels)}")


def _pixels(masks: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> dict[str, float]:
    scores = pixel_scores([np.asarray(t) > 0 for t in labels], [m > 0 for m in masks])
    return {"dice": scores["dice"], "iou": scores["iou"]}


def baseline_scores(images: Sequence[Any], labels: Sequence[np.ndarray],
                    polarity: str = "auto") -> dict[str, dict[str, float]]:
    """``{"otsu_components": {"dice", "iou", "dsb_map"}, "otsu_watershed": {...}}``: pixel Dice
    and IoU of the Otsu masks (counts summed over images) and the mean instance score
    (``scoring.dsb_score_dataset``) of both pipelines against true instance ``labels``."""
    _check_pairs(images, labels)
    masks = [otsu_mask(image, polarity) for image in images]
    scores = {}
    for pipeline in PIPELINES:
        found = [label_instances(m.astype(np.float32), 0.5, pipeline.split("_")[1]) for m in masks]
        scores[pipeline] = {**_pixels(masks, labels), "dsb_map": dsb_score_dataset(list(labels), found)}
    return scores


CLASSICAL_GRID = {"background": (0.0, 30.0), "method": ("components", "watershed"),
                  "smooth": (1.0, 2.0, 4.0), "min_distance": (3, 7), "min_size": (10, 30, 60)}
CLASSICAL_DEFAULT = {"background": 30.0, "method": "watershed", "smooth": 2.0,
                     "min_distance": 3, "min_size": 30}  # where no validation slides chose
MAX_TUNE_IMAGES = 24


def classical_mask(image: Any, background: float = 0.0, polarity: str = "auto") -> np.ndarray:
    """``(H, W)`` bool: Otsu's foreground of ``to_grey`` minus its Gaussian blur of width
    ``background`` (the uneven light; 0 = none), holes filled."""
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
    """``(H, W)`` int32 labels: ``classical_mask`` split by ``postprocess.label_instances``
    (components, or a watershed with these ``smooth``, ``min_distance`` and ``min_size``)."""
    mask = classical_mask(image, background, polarity).astype(np.float32)
    return label_instances(mask, 0.5, method, smooth=smooth, min_distance=min_distance,
                           min_size=min_size)


def tune_classical(images: Sequence[Any], labels: Sequence[np.ndarray],
                   grid: dict | None = None) -> dict:
    """``{"settings", "dsb_map", "dice", "iou"}``: the ``classical_instances`` keyword arguments
    from ``grid`` (updating ``CLASSICAL_GRID``) with the best instance score on the first
    ``MAX_TUNE_IMAGES`` (validation) slides, and ``classical_scores`` on all of them."""
    _check_pairs(images, labels)
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
    """``{"dsb_map", "dice", "iou"}`` of ``classical_instances(image, **settings)`` (pixel counts
    summed over images)."""
    found = [classical_instances(im, **settings) for im in images]
    truth = [np.asarray(t) for t in labels]
    return {"dsb_map": dsb_score_dataset(truth, found), **_pixels(found, truth)}
