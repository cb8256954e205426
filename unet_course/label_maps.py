"""Label maps: the one input check every instance module shares.

A label map is a 2-D integer array: 0 is background, every other value is one object; the
values need not be consecutive. ``scoring``, ``postprocess``, ``targets`` and ``overlay`` take
label maps and check them with ``check_labels`` before any work. Relabelling to 1..n is
``skimage.segmentation.relabel_sequential`` everywhere in the package.
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
