"""Pictures of instance label maps as RGB arrays, for files rather than figures.

What belongs here: ``overlay_instances`` (each object tinted in the course's label colours,
its outline in white by ``skimage.segmentation.mark_boundaries``), what ``unet-course predict`` writes beside each label PNG. Figures
drawn with matplotlib are ``lessons.plotting``; both use ``label_colormap``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from unet_course.label_maps import check_labels


def label_colormap(num_labels: int, seed: int = 0) -> ListedColormap:
    """A colour map for instance labels: black for 0, then distinct bright colours (shuffled
    so neighbouring labels differ)."""
    base = plt.get_cmap("tab20").colors + plt.get_cmap("Set3").colors
    order = np.random.default_rng(seed).permutation(max(num_labels, 1))
    colours = [(0.0, 0.0, 0.0)] + [base[i % len(base)] for i in order]
    return ListedColormap(colours[: num_labels + 1] if num_labels else colours[:2])


def overlay_instances(image: np.ndarray, labels: np.ndarray, alpha: float = 0.35) -> np.ndarray:
    """An RGB picture of ``labels`` over ``image``: each object tinted, its outline in white.

    Args:
        image: (H, W, 3) or (H, W) uint8 (or float in [0, 1]).
        labels: (H, W) integer label map of the same height and width.
        alpha: opacity of the tint.

    Returns:
        (H, W, 3) uint8.
    """
    from skimage.segmentation import mark_boundaries

    labels = check_labels(labels, "labels")
    image = np.asarray(image)
    if image.shape[:2] != labels.shape or image.ndim not in (2, 3):
        raise ValueError(f"image {image.shape} and labels {labels.shape} differ in size")
    rgb = image / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    rgb = np.repeat(rgb[..., None], 3, -1) if rgb.ndim == 2 else rgb[..., :3]
    top = int(labels.max(initial=0))
    colours = np.asarray(label_colormap(top)(np.arange(top + 1)))[:, :3]  # the course's colours
    # The tint by hand: skimage.color.label2rgb would also turn the image grey, and lose the
    # colours of a bright-field (H&E) slide around the nuclei.
    fg = labels > 0
    tinted = rgb.copy()
    tinted[fg] = (1 - alpha) * rgb[fg] + alpha * colours[labels[fg]]
    tinted = mark_boundaries(tinted, labels, color=(1, 1, 1), mode="inner")
    return np.round(np.clip(tinted, 0, 1) * 255).astype(np.uint8)
