"""The course's figures. Each helper draws on ``ax`` (a new figure when None) and returns it,
leaving matplotlib's global settings alone."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.patheffects import withStroke
from matplotlib.ticker import MaxNLocator

from unet_course.overlay import label_colormap

# Error colours: visible on dark and on pink slides, and to red-green colour-blind readers.
FALSE_POSITIVE = (1.0, 0.15, 0.05)  # red: predicted nucleus where there is none
FALSE_NEGATIVE = (0.05, 0.45, 1.0)  # blue: nucleus the prediction missed
TRUE_POSITIVE = (0.3, 0.95, 0.3)  # green: found correctly


def _axes(ax: Axes | None) -> Axes:
    return plt.subplots(figsize=(4, 4))[1] if ax is None else ax


def _picture(array: np.ndarray, ax: Axes | None, title: str | None, **imshow) -> Axes:
    ax = _axes(ax)
    ax.imshow(array, interpolation="nearest", **imshow)
    ax.set(xticks=[], yticks=[])
    if title:
        ax.set_title(title)
    return ax


def _paint(ax: Axes, shape: tuple, masks: Iterable, alpha: float) -> None:
    """Draw ``(mask, colour)`` pairs over ``ax`` as one RGBA layer; elsewhere see-through."""
    layer = np.zeros((*shape, 4))
    for mask, colour in masks:
        layer[mask] = (*colour, alpha)
    ax.imshow(layer, interpolation="nearest")


def show_image(image: np.ndarray, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Show an ``(H, W)`` (grey) or ``(H, W, 3)`` image without ticks."""
    image = np.asarray(image)
    return _picture(image, ax, title, cmap="gray" if image.ndim == 2 else None)


def show_labels(labels: np.ndarray, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Show an ``(H, W)`` int label map, each object its own colour on black; ValueError unless
    ``labels`` is 2-D."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D label map (H, W), got shape {labels.shape}")
    top = int(labels.max()) if labels.size else 0
    return _picture(labels, ax, title, cmap=label_colormap(top), vmin=0, vmax=max(top, 1))


def overlay_mask(image: np.ndarray, mask: np.ndarray, ax: Axes | None = None,
                 color: tuple[float, float, float] = TRUE_POSITIVE, alpha: float = 0.45,
                 title: str | None = None) -> Axes:  # fmt: skip
    """Show ``image`` with ``mask (H, W)`` (cast to bool) over it in ``color`` at ``alpha``."""
    ax = show_image(image, ax=ax, title=title)
    mask = np.asarray(mask).astype(bool)
    _paint(ax, mask.shape, [(mask, color)], alpha)
    return ax


def error_overlay(image: np.ndarray, true_mask: np.ndarray, pred_mask: np.ndarray,
                  ax: Axes | None = None, alpha: float = 0.55, title: str | None = None,
                  legend: bool = True) -> Axes:  # fmt: skip
    """Show ``image`` with true positives green, false positives red, false negatives blue, from
    ``(H, W)`` masks cast to bool. Raises ValueError when their shapes differ."""
    truth, pred = np.asarray(true_mask).astype(bool), np.asarray(pred_mask).astype(bool)
    if truth.shape != pred.shape:
        raise ValueError(f"mask shapes differ: true {truth.shape}, predicted {pred.shape}")
    ax = show_image(image, ax=ax, title=title)
    colours = (TRUE_POSITIVE, FALSE_POSITIVE, FALSE_NEGATIVE)
    kinds = (truth & pred, pred & ~truth, truth & ~pred)
    _paint(ax, truth.shape, zip(kinds, colours, strict=True), alpha)
    if legend:
        ax.legend([plt.Rectangle((0, 0), 1, 1, color=c) for c in colours],
                  ["true positive", "false positive", "false negative"],
                  loc="lower right", fontsize="x-small", framealpha=0.8)  # fmt: skip
    return ax


def plot_history(history: Mapping[str, Sequence[float]] | object,
                 metrics: Sequence[str] = ("loss",), ax: Axes | None = None,
                 title: str | None = None) -> Axes:  # fmt: skip
    """Curves of ``metrics`` from a ``keras.callbacks.History`` (or its dict) against epochs,
    ``val_`` values dashed. Raises ValueError when a metric is missing."""
    values = getattr(history, "history", history)
    missing = [m for m in metrics if m not in values]
    if missing:
        raise ValueError(f"history has no {missing}; it has {sorted(values)}")
    ax = _axes(ax)
    for i, name in enumerate(metrics):
        epochs = np.arange(1, len(values[name]) + 1)
        ax.plot(epochs, values[name], "-", color=f"C{i}", label=f"train {name}")
        if f"val_{name}" in values:
            ax.plot(epochs, values[f"val_{name}"], "--", color=f"C{i}", label=f"validation {name}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(", ".join(metrics))
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str] | None = None,
               ncols: int = 4, size: float = 3.0):  # fmt: skip
    """A grid of ``(H, W)`` or ``(H, W, 3)`` images, spare cells hidden: ``(fig, axes)``. Raises
    ValueError when ``images`` is empty."""
    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    nrows, ncols = -(-n // ncols), min(ncols, n)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < n:
            show_image(images[i], ax=ax, title=titles[i] if titles else None)
        else:
            ax.axis("off")
    return fig, axes


# ---------------------------------------------------------------- convolution pictures (02, 03)


def _write_values(ax: Axes, grid: np.ndarray) -> None:
    """Write each finite value of ``grid`` in its cell, black outlined in white."""
    for (r, c), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(c, r, f"{v:g}", ha="center", va="center", fontsize=8, color="black",
                    path_effects=[withStroke(linewidth=2.5, foreground="white")])  # fmt: skip


def _box(ax: Axes, row: float, col: float, height: int, width: int, color: str = "red",
         lw: float = 2.5) -> None:  # fmt: skip
    """Outline the cells ``[row, row + height) x [col, col + width)``."""
    ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), width, height, fill=False, lw=lw,
                               edgecolor=color))  # fmt: skip


def show_matrix(matrix, ax: Axes | None = None, title: str | None = None,
                annotate: bool | None = None, cmap: str = "viridis") -> Axes:  # fmt: skip
    """Heat map of a ``(rows, cols)`` matrix (dense or ``scipy.sparse``), rows = output pixels,
    columns = input pixels; values written in the cells when ``annotate`` (default: at most 400
    entries). Raises ValueError unless the matrix is 2-D."""
    m = np.asarray(matrix.toarray() if hasattr(matrix, "toarray") else matrix)
    if m.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {m.shape}")
    ax = _axes(ax)
    ax.imshow(m, cmap=cmap, interpolation="nearest")
    if annotate if annotate is not None else m.size <= 400:
        _write_values(ax, m)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel=f"column = input pixel (0..{m.shape[1] - 1})",
           ylabel=f"row = output pixel (0..{m.shape[0] - 1})")  # fmt: skip
    if title:
        ax.set_title(title)
    return ax


def _value_grid(ax: Axes, grid: np.ndarray, title: str, cmap: str = "Blues",
                vmin: float | None = None, vmax: float | None = None) -> None:  # fmt: skip
    """:func:`show_matrix` of a small 2-D array, every cell ticked (values up to 144 cells)."""
    show_matrix(grid, ax=ax, annotate=grid.size <= 144, cmap=cmap).images[0].set_clim(vmin, vmax)
    ax.set(xticks=range(grid.shape[1]), yticks=range(grid.shape[0]), xlabel="column",
           ylabel="row")  # fmt: skip
    ax.tick_params(labelsize=8)
    ax.set_title(title, fontsize=9)


def _animate(draw, frames: int, interval: int, figsize: tuple[float, float]) -> str:
    """``draw(fig, t)`` on a cleared figure for each frame ``t``, as ``FuncAnimation.to_jshtml()``;
    the figure is closed."""
    from matplotlib.animation import FuncAnimation

    fig = plt.figure(figsize=figsize, layout="constrained")

    def frame(t: int) -> None:
        fig.clear()
        draw(fig, t)

    html = FuncAnimation(fig, frame, frames=frames, interval=interval).to_jshtml(
        default_mode="loop")  # fmt: skip
    plt.close(fig)
    return html


def draw_conv_window(x: np.ndarray, kernel: np.ndarray, stride=1, padding="valid",
                     window: int = 0, fig=None):  # fmt: skip
    """Draw window ``window`` (row by row, clipped to the last) of the convolution of ``x (H, W)``
    by ``kernel (kh, kw)`` on ``fig`` (new when None): the padded input, the matrix ``C``, the
    output so far and the pixel·weight sum. Returns the figure; raises as ``conv.conv_matrix``."""
    from unet_course.lessons import conv

    x, kernel = np.asarray(x, dtype=float), np.asarray(kernel, dtype=float)
    c = conv.conv_matrix(kernel, x.shape, stride, padding)  # validates everything
    sh, sw = (int(v) for v in np.broadcast_to(stride, 2))
    pads = conv.conv_padding(x.shape, kernel.shape, stride, padding)
    padded = np.pad(x, pads)
    y = (c @ x.ravel()).reshape(conv.conv_output_shape(x.shape, kernel.shape, stride, padding))
    t = int(np.clip(window, 0, y.size - 1))
    i, j = divmod(t, y.shape[1])
    if fig is None:
        fig = plt.figure(figsize=(12, 3.8), layout="constrained")
    axes = fig.subplots(1, 3, width_ratios=[1, 2.2, 0.8])
    name = "padded input" if padded.shape != x.shape else "input (no padding)"
    _value_grid(axes[0], padded, f"{name} {padded.shape[0]}x{padded.shape[1]}, "
                f"window {t} = output ({i}, {j})")  # fmt: skip
    _box(axes[0], pads[0][0], pads[1][0], *x.shape, color="gray")
    _box(axes[0], i * sh, j * sw, *kernel.shape)
    show_matrix(c, ax=axes[1], annotate=False).set_title(f"row {t} of C, shape {c.shape}",
                                                         fontsize=9)  # fmt: skip
    if c.shape[0] <= 16 and c.shape[1] <= 25:  # the non-zeros, where they fit
        _write_values(axes[1], np.where(c != 0, c, np.nan))
    axes[1].set_aspect("auto")
    axes[1].tick_params(labelsize=8)
    _box(axes[1], t, 0, 1, c.shape[1])
    partial = np.where(np.arange(y.size).reshape(y.shape) <= t, y, np.nan)
    _value_grid(axes[2], partial, f"output[{i}, {j}] = {y[i, j]:g}", cmap="Oranges")
    _box(axes[2], i, j, 1, 1)
    patch = padded[i * sh : i * sh + kernel.shape[0], j * sw : j * sw + kernel.shape[1]]
    products = " + ".join(f"{p:g}·{k:g}" for p, k in zip(patch.flat, kernel.flat, strict=True))
    fig.suptitle(f"output[{i}, {j}] = {products} = {y[i, j]:g}   (pixel·weight)", fontsize=10)
    return fig


def animate_conv_window(x: np.ndarray, kernel: np.ndarray, stride=1, padding="valid",
                        interval: int = 900) -> str:  # fmt: skip
    """:func:`draw_conv_window` for every output pixel, as ``FuncAnimation.to_jshtml()`` (show it
    with ``IPython.display.HTML``). Raises as :func:`unet_course.lessons.conv.conv_matrix`."""
    from unet_course.lessons import conv

    frames = np.prod(conv.conv_output_shape(np.shape(x), np.shape(kernel), stride, padding))
    return _animate(lambda fig, t: draw_conv_window(x, kernel, stride, padding, t, fig),
                    int(frames), interval, (12, 3.8))  # fmt: skip


def animate_conv_transpose(y: np.ndarray, kernel: np.ndarray, stride=1, padding="valid",
                           output_padding=None, interval: int = 900) -> str:  # fmt: skip
    """A transposed convolution of ``y (h, w)`` as ``FuncAnimation.to_jshtml()``: frame ``t``
    adds ``y[i, j] * kernel`` to the output at ``(i * s - pad_top, j * s - pad_left)``."""
    from unet_course.lessons import conv

    y, kernel = np.asarray(y, dtype=float), np.asarray(kernel, dtype=float)
    out = conv.conv2d_transpose(y, kernel, stride, padding, output_padding)  # validates
    sh, sw = (int(v) for v in np.broadcast_to(stride, 2))
    pads = conv.conv_padding(out.shape, kernel.shape, stride, padding)
    order = np.arange(y.size).reshape(y.shape)
    lo, hi = min(0.0, float(out.min())), float(out.max())

    def draw(fig, t: int) -> None:
        axes = fig.subplots(1, 3, width_ratios=[1, 1, 1.6])
        i, j = divmod(t, y.shape[1])
        _value_grid(axes[0], y, f"input y: value y[{i}, {j}] = {y[i, j]:g}")
        _box(axes[0], i, j, 1, 1)
        _value_grid(axes[1], y[i, j] * kernel, f"y[{i}, {j}] = {y[i, j]:g} × kernel", "Purples")
        partial = conv.conv2d_transpose(np.where(order <= t, y, 0), kernel, stride, padding,
                                        output_padding)  # fmt: skip
        _value_grid(axes[2], partial, f"output so far ({t + 1} of {y.size} added)", "Oranges",
                    vmin=lo, vmax=hi)  # fmt: skip
        _box(axes[2], i * sh - pads[0][0], j * sw - pads[1][0], *kernel.shape)
        axes[2].set(xlim=(-0.5, out.shape[1] - 0.5), ylim=(out.shape[0] - 0.5, -0.5))

    return _animate(draw, y.size, interval, (12, 4))


def draw_unet(model: object, ax: Axes | None = None) -> Axes:
    """Draw the U of a ``unet_course.model.build_unet`` model: one box per block, input and
    output, its height ~ the feature-map side and width ~ sqrt(channels), labelled ``H x W x C``,
    with pooling, up-sampling, skip and head arrows and a legend."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    from unet_course import model as unet_model

    blocks = unet_model.unet_blocks(model)  # blocks[i]["level"] == i
    side0, chan0, depth = blocks[0]["shape"][0], blocks[1]["shape"][2], (len(blocks) - 3) // 2
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 5.5))
    for i, b in enumerate(blocks):
        rel = b["shape"][0] / side0 if b["shape"][0] and side0 else 0.5 ** b["rung"]
        b.update(x=1.25 * i, y=-1.3 * b["rung"], h=max(1.2 * rel, 0.05),
                 w=max(0.25 * np.sqrt(b["shape"][2] / chan0), 0.05))  # fmt: skip
        colour = {"in": "0.8", "out": "tab:blue"}.get(b["side"], "tab:orange")
        ax.add_patch(Rectangle((b["x"] - b["w"] / 2, b["y"] - b["h"] / 2), b["w"], b["h"],
                               facecolor=colour, edgecolor="black", alpha=0.85))  # fmt: skip
        label = b["name"] + "\n" + " x ".join("?" if s is None else str(s) for s in b["shape"])
        if b["rung"] == 0:  # the full-resolution boxes: label above
            ax.text(b["x"], b["y"] + b["h"] / 2 + 0.08, label, ha="center", va="bottom", fontsize=7)
        elif b["side"] == "bottom":
            ax.text(b["x"], b["y"] - b["h"] / 2 - 0.08, label, ha="center", va="top", fontsize=7)
        else:  # down path on the left of the box, up path on the right, clear of the arrows
            sign = -1 if b["side"] == "down" else 1
            ax.text(b["x"] + sign * (b["w"] / 2 + 0.06), b["y"], label, fontsize=7,
                    ha="right" if sign < 0 else "left", va="center")  # fmt: skip

    def arrow(a: dict, b: dict, colour: str, corner: int = 0, style: str = "-") -> None:
        """From ``a``'s right side to ``b``'s left; ``corner`` -1: a's bottom to b's top."""
        ax.annotate("", xy=(b["x"] - b["w"] / 2, b["y"] - corner * b["h"] / 2),
                    xytext=(a["x"] + a["w"] / 2, a["y"] + corner * a["h"] / 2),
                    arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.5, linestyle=style,
                                    shrinkA=0, shrinkB=0))  # fmt: skip

    for lv in range(2 * depth + 2):
        if lv in (0, 2 * depth + 1):  # input -> c1, last block -> head
            arrow(blocks[lv], blocks[lv + 1], "black" if lv == 0 else "tab:blue")
        else:  # pooling down, then up-sampling
            colour, corner = ("tab:red", -1) if lv <= depth else ("tab:green", 1)
            arrow(blocks[lv], blocks[lv + 1], colour, corner)
    for lv in range(1, depth + 1):  # skips: copy (or crop and copy) across the U
        arrow(blocks[lv], blocks[2 * depth + 2 - lv], "0.45", 0, "--")
    crop = "valid" in {getattr(la, "padding", None) for la in model.layers if la.name == "c1"}
    handles = [Line2D([], [], color=c, ls=s, lw=1.5, label=t) for c, s, t in (
        ("black", "-", "input"), ("tab:red", "-", "max pool 2x2"),
        ("tab:green", "-", "up-sample x2"),
        ("0.45", "--", "crop and copy (skip)" if crop else "copy (skip)"),
        ("tab:blue", "-", "conv 1x1 head"))]  # fmt: skip
    ax.legend(handles=handles, loc="lower left", fontsize=8, frameon=False)
    ax.set_xlim(-0.8, blocks[-1]["x"] + 0.8)
    ax.set_ylim(-1.3 * depth - 0.9, 1.1)
    ax.set(xticks=[], yticks=[])
    ax.spines[:].set_visible(False)
    ax.set_xlabel("box height ~ feature-map side, width ~ sqrt(channels); orange: two 3x3 convs")
    ax.set_title(f"{model.name}: {model.count_params():,} parameters")
    return ax
