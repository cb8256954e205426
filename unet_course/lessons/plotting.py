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
from matplotlib.patheffects import withStroke
from matplotlib.ticker import MaxNLocator

from unet_course.overlay import label_colormap  # noqa: F401 (the course's label colours)

# Error colours, chosen to stand out on both dark (fluorescence) and light pink (bright-field)
# images, and to differ for red-green colour-blind readers by lightness and hue (red vs blue).
FALSE_POSITIVE = (1.0, 0.15, 0.05)  # red: predicted nucleus where there is none
FALSE_NEGATIVE = (0.05, 0.45, 1.0)  # blue: nucleus the prediction missed
TRUE_POSITIVE = (0.3, 0.95, 0.3)  # green: found correctly


def _axes(ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    return ax


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

    Green: true positives; red: false positives; blue: false negatives.
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
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # whole epochs only
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


# ---------------------------------------------------------------- convolution pictures (02, 03)


def show_matrix(
    matrix, ax: Axes | None = None, title: str | None = None, annotate: bool | None = None,
    cmap: str = "viridis",
) -> Axes:  # fmt: skip
    """Heat map of a small matrix ``(rows, cols)`` (dense or ``scipy.sparse``), values written in
    the cells when ``annotate`` (default: when it has at most 400 entries)."""
    m = np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix)
    if m.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {m.shape}")
    ax = _axes(ax)
    ax.imshow(m, cmap=cmap, interpolation="nearest", aspect="equal")
    if annotate if annotate is not None else m.size <= 400:
        mid = (m.max() + m.min()) / 2
        for (r, c), v in np.ndenumerate(m):
            ax.text(c, r, f"{v:g}", ha="center", va="center", fontsize=7,
                    color="black" if v > mid else "white")  # fmt: skip
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"column = input pixel (0..{m.shape[1] - 1})")
    ax.set_ylabel(f"row = output pixel (0..{m.shape[0] - 1})")
    if title:
        ax.set_title(title)
    return ax


def _value_grid(
    ax: Axes, grid: np.ndarray, title: str, cmap: str = "Blues", vmin: float | None = None,
    vmax: float | None = None, ticksize: float = 6,
) -> None:  # fmt: skip
    """Draw a small 2-D array as coloured cells with their values (NaN cells left blank); the
    values are black with a white outline, readable on light and on dark cells (and themes).
    ``vmin``/``vmax`` fix the colour scale (default: the array's own range)."""
    ax.clear()
    ax.imshow(grid, cmap=cmap, interpolation="nearest", vmin=vmin, vmax=vmax)
    if grid.size <= 144:
        for (r, c), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(c, r, f"{v:g}", ha="center", va="center", fontsize=8, color="black",
                        path_effects=[withStroke(linewidth=2.5, foreground="white")])  # fmt: skip
    ax.set_xticks(range(grid.shape[1]))
    ax.set_yticks(range(grid.shape[0]))
    ax.tick_params(labelsize=ticksize)
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    ax.set_title(title, fontsize=9)


def _box(ax: Axes, row: float, col: float, height: int, width: int, color: str = "red") -> None:
    ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), width, height, fill=False, lw=2.5,
                               edgecolor=color))  # fmt: skip


def _jshtml(fig, update, frames: int, interval: int) -> str:
    from matplotlib.animation import FuncAnimation

    anim = FuncAnimation(fig, update, frames=frames, interval=interval)
    html = anim.to_jshtml(default_mode="loop")
    plt.close(fig)
    return html


def animate_conv_window(
    x: np.ndarray, kernel: np.ndarray, stride=1, padding="valid", interval: int = 900
) -> str:
    """HTML animation of a 2-D convolution's window sliding over ``x (H, W)``.

    Each frame: the padded input with the ``(kh, kw)`` window, the matching row of the
    convolution matrix ``C``, the output filled so far, and the sum of pixel·weight products
    written out above them. Returns ``FuncAnimation.to_jshtml()``
    (show it with ``IPython.display.HTML``); the figure is closed.
    """
    from unet_course.lessons import conv

    x, kernel = np.asarray(x, dtype=float), np.asarray(kernel, dtype=float)
    c = conv.conv_matrix(kernel, x.shape, stride, padding)  # validates everything
    sh, sw = (int(v) for v in np.broadcast_to(stride, 2))
    pads = conv.conv_padding(x.shape, kernel.shape, stride, padding)
    padded, y = np.pad(x, pads), (c @ x.ravel()).reshape(conv.conv_output_shape(
        x.shape, kernel.shape, stride, padding))  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1, 2.2, 0.8]})

    def update(t: int) -> None:
        i, j = divmod(t, y.shape[1])
        where = f"window at output ({i}, {j})"
        _value_grid(axes[0], padded, f"padded input, {where}" if padded.size > x.size else where,
                    ticksize=8)  # fmt: skip
        _box(axes[0], pads[0][0], pads[1][0], *x.shape, color="gray")
        _box(axes[0], i * sh, j * sw, *kernel.shape)
        axes[1].clear()
        show_matrix(c, ax=axes[1], annotate=c.size <= 400, title=f"row {t} of C (shape {c.shape})")
        axes[1].tick_params(labelsize=8)
        _box(axes[1], t, 0, 1, c.shape[1])
        partial = np.where(np.arange(y.size).reshape(y.shape) <= t, y, np.nan)
        _value_grid(axes[2], partial, f"output[{i}, {j}] = {y[i, j]:g}", cmap="Oranges", ticksize=8)
        _box(axes[2], i, j, 1, 1)
        # the sum written out, pixel times kernel weight, so each frame can be checked by hand
        window = padded[i * sh : i * sh + kernel.shape[0], j * sw : j * sw + kernel.shape[1]]
        products = " + ".join(f"{p:g}·{k:g}" for p, k in zip(window.flat, kernel.flat, strict=True))
        fig.suptitle(f"output[{i}, {j}] = {products} = {y[i, j]:g}   (pixel·weight)", fontsize=10)

    return _jshtml(fig, update, y.size, interval)


def animate_conv_transpose(
    y: np.ndarray, kernel: np.ndarray, stride=1, padding="valid", output_padding=None,
    interval: int = 900,
) -> str:  # fmt: skip
    """HTML animation of a transposed convolution scattering each ``y (h, w)`` value into the
    output: frame ``t`` adds ``y[i, j] * kernel`` at rows ``i * s - pad_top`` onward.

    The output panel keeps one colour scale, from 0 (or the most negative value) to the final
    output's maximum. Returns ``FuncAnimation.to_jshtml()``; the figure is closed.
    """
    from unet_course.lessons import conv

    y, kernel = np.asarray(y, dtype=float), np.asarray(kernel, dtype=float)
    out = conv.conv2d_transpose(y, kernel, stride, padding, output_padding)  # validates
    sh, sw = (int(v) for v in np.broadcast_to(stride, 2))
    pads = conv.conv_padding(out.shape, kernel.shape, stride, padding)
    order = np.arange(y.size).reshape(y.shape)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), gridspec_kw={"width_ratios": [1, 1, 1.6]})

    lo, hi = min(0.0, float(out.min())), float(out.max())

    def update(t: int) -> None:
        i, j = divmod(t, y.shape[1])
        _value_grid(axes[0], y, f"input y: value y[{i}, {j}] = {y[i, j]:g}", ticksize=9)
        _box(axes[0], i, j, 1, 1)
        _value_grid(axes[1], y[i, j] * kernel, f"y[{i}, {j}] = {y[i, j]:g} × kernel",
                    cmap="Purples", ticksize=9)  # fmt: skip
        partial = conv.conv2d_transpose(np.where(order <= t, y, 0), kernel, stride, padding,
                                        output_padding)  # fmt: skip
        _value_grid(axes[2], partial, f"output so far ({t + 1} of {y.size} added)", "Oranges",
                    vmin=lo, vmax=hi, ticksize=9)  # fmt: skip
        _box(axes[2], i * sh - pads[0][0], j * sw - pads[1][0], *kernel.shape)
        axes[2].set_xlim(-0.5, out.shape[1] - 0.5)
        axes[2].set_ylim(out.shape[0] - 0.5, -0.5)

    return _jshtml(fig, update, y.size, interval)


def _unet_box_geometry(blocks: list[dict]) -> list[dict]:
    """Centre, width and height of each box of ``model.unet_blocks``: height from the
    feature-map side (relative to the input), width from the square root of the channels."""
    side0 = blocks[0]["shape"][0]
    chan0 = max(b["shape"][2] for b in blocks if b["name"] == "c1")
    boxes = []
    for i, b in enumerate(blocks):
        side = b["shape"][0]
        rel = side / side0 if side and side0 else 0.5 ** b["rung"]
        height = max(1.2 * rel, 0.05)
        width = max(0.25 * np.sqrt(b["shape"][2] / chan0), 0.05)
        boxes.append({**b, "x": 1.25 * i, "y": -1.3 * b["rung"], "w": width, "h": height})
    return boxes


def _unet_arrow(ax: Axes, start: tuple, end: tuple, color: str, style: str = "-") -> None:
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", color=color,
                lw=1.5, linestyle=style, shrinkA=0, shrinkB=0))  # fmt: skip


def draw_unet(model: object, ax: Axes | None = None) -> Axes:
    """Draw the U of a U-Net built by ``unet_course.model.build_unet``, from the model itself.

    One box per block (``c1``...``c9`` for depth 4) plus the input and the output: height in
    proportion to the feature-map side, width to the square root of the channels, labelled
    ``H x W x C``. Red arrows: 2x2 max pooling; green: up-sampling; dashed grey: the skip
    connections (copy, or crop and copy for unpadded models); blue: the 1x1 head.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    from unet_course import model as unet_model

    blocks = _unet_box_geometry(unet_model.unet_blocks(model))
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 5.5))
    by_level = {b["level"]: b for b in blocks}
    depth = (len(blocks) - 3) // 2
    for b in blocks:
        colour = {"in": "0.8", "out": "tab:blue"}.get(b["side"], "tab:orange")
        ax.add_patch(Rectangle((b["x"] - b["w"] / 2, b["y"] - b["h"] / 2), b["w"], b["h"],
                               facecolor=colour, edgecolor="black", alpha=0.85))  # fmt: skip
        shape = " x ".join("?" if s is None else str(s) for s in b["shape"])
        label = f"{b['name']}\n{shape}"
        if b["rung"] == 0:  # the full-resolution boxes: label above
            ax.text(b["x"], b["y"] + b["h"] / 2 + 0.08, label, ha="center", va="bottom", fontsize=7)
        elif b["side"] == "bottom":
            ax.text(b["x"], b["y"] - b["h"] / 2 - 0.08, label, ha="center", va="top", fontsize=7)
        else:  # down path on the left of the box, up path on the right, clear of the arrows
            sign = -1 if b["side"] == "down" else 1
            ax.text(b["x"] + sign * (b["w"] / 2 + 0.06), b["y"], label, fontsize=7,
                    ha="right" if sign < 0 else "left", va="center")  # fmt: skip
    for lv in range(0, 2 * depth + 2):
        a, b = by_level[lv], by_level[lv + 1]
        if lv == 0 or lv == 2 * depth + 1:  # input -> c1, last block -> head
            colour = "black" if lv == 0 else "tab:blue"
            _unet_arrow(ax, (a["x"] + a["w"] / 2, a["y"]), (b["x"] - b["w"] / 2, b["y"]), colour)
        elif lv <= depth:  # pooling: bottom of a block to the top of the next
            a_corner = (a["x"] + a["w"] / 2, a["y"] - a["h"] / 2)
            _unet_arrow(ax, a_corner, (b["x"] - b["w"] / 2, b["y"] + b["h"] / 2), "tab:red")
        else:  # up-sampling
            a_corner = (a["x"] + a["w"] / 2, a["y"] + a["h"] / 2)
            _unet_arrow(ax, a_corner, (b["x"] - b["w"] / 2, b["y"] - b["h"] / 2), "tab:green")
    crop = "valid" in {getattr(la, "padding", None) for la in model.layers if la.name == "c1"}
    for lv in range(1, depth + 1):  # skips: copy (or crop and copy) across the U
        a, b = by_level[lv], by_level[2 * depth + 2 - lv]
        _unet_arrow(ax, (a["x"] + a["w"] / 2, a["y"]), (b["x"] - b["w"] / 2, b["y"]), "0.45", "--")
    skip = "crop and copy (skip)" if crop else "copy (skip)"
    handles = [Line2D([], [], color=c, ls=s, lw=1.5, label=t) for c, s, t in (
        ("black", "-", "input"), ("tab:red", "-", "max pool 2x2"), ("tab:green", "-", "up-sample x2"),
        ("0.45", "--", skip), ("tab:blue", "-", "conv 1x1 head"))]  # fmt: skip
    ax.legend(handles=handles, loc="lower left", fontsize=8, frameon=False)
    xs = [b["x"] for b in blocks]
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(-1.3 * depth - 0.9, 1.1)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel("box height ~ feature-map side, width ~ sqrt(channels); orange: two 3x3 convs")
    ax.set_title(f"{model.name}: {model.count_params():,} parameters")
    return ax
