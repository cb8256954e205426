"""Label maps: 2-D integer arrays, 0 background, every other value one object."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_labels(labels: Any, name: str) -> np.ndarray:
    """Return ``labels`` as a 2-D non-negative integer array, or raise naming ``name``."""
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(labels).__name__}")
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name} must be an integer label map (0 = background, 1, 2, ... = "
                        f"objects), got dtype {labels.dtype}; label a mask first, e.g. "
                        f"scipy.ndimage.label(mask)[0]")
    if labels.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W), got shape {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{name} must hold labels >= 0, got minimum {labels.min()}")
    return labels


def relabel(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(relabelled, ids)``: a non-negative integer label map renumbered 1..n in the order of
    the old values by ``skimage.segmentation.relabel_sequential`` (``labels`` itself when
    already 1..n), and the ``(n,)`` old value of each new label."""
    from skimage.segmentation import relabel_sequential

    top = int(labels.max()) if labels.size else 0
    if top <= 4 * labels.size + 1024 and np.bincount(labels.ravel(), minlength=top + 1)[1:].all():
        return labels, np.arange(1, top + 1)
    relabelled, _, inverse = relabel_sequential(labels)
    return relabelled, np.asarray(inverse.out_values[inverse.in_values > 0])


FLAT_OBJECTS = 0.01  # looks_like_label_map: most side-by-side object pixels that may differ


def looks_like_label_map(image: Any) -> bool:
    """True for an ``(H, W)`` or ``(H, W, C)`` image that looks like a label map or mask: grey
    integers with some 0, where fewer than ``FLAT_OBJECTS`` of the (at least 20) horizontally
    adjacent pairs of non-zero pixels differ."""
    image = np.asarray(image)
    if image.ndim == 3:
        if image.shape[-1] > 1 and not (image == image[..., :1]).all():
            return False
        image = image[..., 0]
    if image.ndim != 2 or not np.issubdtype(image.dtype, np.integer) or not (image == 0).any():
        return False
    left, right = image[:, :-1], image[:, 1:]
    inside = (left != 0) & (right != 0)
    if inside.sum() < 20:
        return False
    return bool((left[inside] != right[inside]).mean() < FLAT_OBJECTS)
