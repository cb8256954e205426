"""Label maps: the one input check and the one relabelling every instance module shares.

A label map is a 2-D integer array: 0 is background, every other value is one object; the
values need not be consecutive. ``scoring``, ``postprocess``, ``targets`` and ``overlay`` take
label maps and check them with ``check_labels`` before any work; ``relabel`` renumbers them
1..n (``skimage.segmentation.relabel_sequential``); ``looks_like_label_map`` tells a file of
labels or a mask from a microscope image (``predict`` skips them in a folder).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def check_labels(labels: Any, name: str) -> np.ndarray:
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


def relabel(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Renumber the objects 1..n in the order of their old values; 0 stays background.

    What ``skimage.segmentation.relabel_sequential`` does. When the largest value is small
    (at most about 4 per pixel), a count per value finds the values in use and one lookup table
    renumbers them, several times faster on a 256x256 map (nothing is copied when they already
    are 1..n, what ``scipy.ndimage.label`` and the watershed give); otherwise
    ``relabel_sequential`` does it.

    Args:
        labels: integer label map, values >= 0 (``check_labels``).

    Returns:
        ``(relabelled, ids)``: the renumbered map (same shape and dtype; ``labels`` itself when
        nothing changes) and the (n,) old value of each new label 1..n, ascending.
    """
    from skimage.segmentation import relabel_sequential

    top = int(labels.max()) if labels.size else 0
    if top <= 4 * labels.size + 1024:  # counting by value is cheap
        used = np.bincount(labels.ravel(), minlength=top + 1)[1:] > 0
        ids = np.flatnonzero(used) + 1
        if used.all():
            return labels, ids
        lut = np.zeros(top + 1, labels.dtype)
        lut[ids] = np.arange(1, len(ids) + 1)
        return lut[labels], ids
    relabelled, _, inverse = relabel_sequential(labels)
    return relabelled, np.asarray(inverse.out_values[inverse.in_values > 0])


#: ``looks_like_label_map``: at most this share of side-by-side object pixels may differ.
FLAT_OBJECTS = 0.01


def looks_like_label_map(image: Any) -> bool:
    """True for an image that looks like a label map or a mask rather than a picture.

    ``image``: ``(H, W)`` or ``(H, W, C)`` (equal channels count as grey). A label map holds
    whole numbers, 0 as background, and one value per object, so side by side inside its
    objects two pixels nearly always agree; a microscope image's noise makes most of them
    differ. True when the image is grey integers with some 0 and some other value, and fewer
    than ``FLAT_OBJECTS`` (1 %) of the horizontally adjacent pairs of non-zero pixels (at
    least 20 of them) differ.
    """
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
