"""The course's figures, with one look throughout.

Every helper takes ``ax=None`` (a new figure when None), draws on it and returns it; none of
them changes matplotlib's global settings. The look: images without ticks, instance labels in a
qualitative colour map on black, masks as translucent overlays, training curves solid and
validation curves dashed, axes labelled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap

FALSE_POSITIVE = (1.0, 0.2, 0.8)  # magenta: predicted nucleus where there is none
FALSE_NEGATIVE = (0.1, 0.9, 1.0)  # cyan: nucleus the prediction missed
TRUE_POSITIVE = (1.0, 0.85, 0.1)  # yellow: found correctly


def _axes(ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    return ax


def label_colormap(num_labels: int, seed: int = 0) -> ListedColormap:
    """A colour map for instance labels: black for 0, then distinct bright colours (shuffled
    so neighbouring labels differ)."""
    base = plt.get_cmap("tab20").colors + plt.get_cmap("Set3").colors
    order = np.random.default_rng(seed).permutation(max(num_labels, 1))
    colours = [(0.0, 0.0, 0.0)] + [base[i % len(base)] for i in order]
    return ListedColormap(colours[: num_labels + 1] if num_labels else colours[:2])


def show_image(image: np.ndarray, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Show an ``(H, W)`` or ``(H, W, 3)`` image without ticks."""
    ax = _axes(ax)
    image = np.asarray(image)
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def show_labels(labels: np.ndarray, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Show an instance label map ``(H, W) int``: each object its own colour, background black."""
    ax = _axes(ax)
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D label map (H, W), got shape {labels.shape}")
    top = int(labels.max()) if labels.size else 0
    ax.imshow(labels, cmap=label_colormap(top), vmin=0, vmax=max(top, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return ax


def overlay_mask(
    image: np.ndarray,
    mask: np.ndarray,
    ax: Axes | None = None,
    color: tuple[float, float, float] = TRUE_POSITIVE,
    alpha: float = 0.45,
    title: str | None = None,
) -> Axes:
    """Show ``image`` with a boolean ``mask (H, W)`` drawn over it as a translucent colour."""
    ax = show_image(image, ax=ax, title=title)
    mask = np.asarray(mask).astype(bool)
    layer = np.zeros((*mask.shape, 4))
    layer[mask] = (*color, alpha)
    ax.imshow(layer, interpolation="nearest")
    return ax


def error_overlay(
    image: np.ndarray,
    true_mask: np.ndarray,
    pred_mask: np.ndarray,
    ax: Axes | None = None,
    alpha: float = 0.55,
    title: str | None = None,
    legend: bool = True,
) -> Axes:
    """Show where a predicted mask is right and wrong over the image.

    Yellow: true positives; magenta: false positives; cyan: false negatives.
    """
    true_mask, pred_mask = np.asarray(true_mask).astype(bool), np.asarray(pred_mask).astype(bool)
    if true_mask.shape != pred_mask.shape:
        raise ValueError(f"mask shapes differ: true {true_mask.shape}, predicted {pred_mask.shape}")
    ax = show_image(image, ax=ax, title=title)
    layer = np.zeros((*true_mask.shape, 4))
    for where, colour in (
        (true_mask & pred_mask, TRUE_POSITIVE),
        (pred_mask & ~true_mask, FALSE_POSITIVE),
        (true_mask & ~pred_mask, FALSE_NEGATIVE),
    ):
        layer[where] = (*colour, alpha)
    ax.imshow(layer, interpolation="nearest")
    if legend:
        handles = [
            plt.Rectangle((0, 0), 1, 1, color=c)
            for c in (TRUE_POSITIVE, FALSE_POSITIVE, FALSE_NEGATIVE)
        ]
        ax.legend(
            handles,
            ["true positive", "false positive", "false negative"],
            loc="lower right",
            fontsize="x-small",
            framealpha=0.8,
        )
    return ax


def plot_history(
    history: Mapping[str, Sequence[float]] | object,
    metrics: Sequence[str] = ("loss",),
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Learning curves: each metric's training values solid, its ``val_`` values dashed.

    ``history`` is a ``keras.callbacks.History`` or its ``.history`` dict.
    """
    values = getattr(history, "history", history)
    missing = [m for m in metrics if m not in values]
    if missing:
        raise ValueError(f"history has no {missing}; it has {sorted(values)}")
    ax = _axes(ax)
    for i, name in enumerate(metrics):
        colour = f"C{i}"
        epochs = np.arange(1, len(values[name]) + 1)
        ax.plot(epochs, values[name], "-", color=colour, label=f"train {name}")
        if f"val_{name}" in values:
            ax.plot(epochs, values[f"val_{name}"], "--", color=colour, label=f"validation {name}")
    ax.set_xlabel("epoch")
    ax.set_ylabel(", ".join(metrics))
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def image_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    size: float = 3.0,
):
    """A grid of images (``(H, W)`` or ``(H, W, 3)``); returns ``(fig, axes)``."""
    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, min(ncols, n), figsize=(size * min(ncols, n), size * nrows), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        if i < n:
            show_image(images[i], ax=ax, title=titles[i] if titles else None)
        else:
            ax.axis("off")
    return fig, axes
