"""Instance label maps drawn as RGB arrays, as ``predict`` writes beside each label PNG."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from unet_course.label_maps import check_labels


def label_colormap(num_labels: int, seed: int = 0) -> ListedColormap:
    """Colour map for instance labels: black for 0, then shuffled ``tab20``/``Set3`` colours."""
    base = plt.get_cmap("tab20").colors + plt.get_cmap("Set3").colors
    order = np.random.default_rng(seed).permutation(max(num_labels, 1))
    colours = [(0.0, 0.0, 0.0)] + [base[i % len(base)] for i in order]
    return ListedColormap(colours[: num_labels + 1] if num_labels else colours[:2])


def overlay_instances(image: np.ndarray, labels: np.ndarray, alpha: float = 0.35) -> np.ndarray:
    """``(H, W, 3)`` uint8 picture of an ``(H, W)`` label map over an ``(H, W, 3)`` or ``(H, W)``
    uint8 (or [0, 1] float) image: each object tinted with opacity ``alpha``, its outline
    white (``skimage.segmentation.mark_boundaries``). Raises ValueError for other sizes."""
    from skimage.segmentation import mark_boundaries

    labels = check_labels(labels, "labels")
    image = np.asarray(image)
    if image.shape[:2] != labels.shape or image.ndim not in (2, 3):
        raise ValueError(f"image {image.shape} and labels {labels.shape} differ in size")
    rgb = image / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    rgb = np.repeat(rgb[..., None], 3, -1) if rgb.ndim == 2 else rgb[..., :3]
    top = int(labels.max(initial=0))
    colours = np.asarray(label_colormap(top)(np.arange(top + 1)))[:, :3]
    # tinted here: skimage.color.label2rgb would turn the rest of a colour slide grey
    fg = labels > 0
    tinted = rgb.copy()
    tinted[fg] = (1 - alpha) * rgb[fg] + alpha * colours[labels[fg]]
    tinted = mark_boundaries(tinted, labels, color=(1, 1, 1), mode="inner")
    return np.round(np.clip(tinted, 0, 1) * 255).astype(np.uint8)
