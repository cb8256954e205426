"""An explorer for a convolution's geometry: input size, kernel size, stride and padding.

What belongs here: the figure that notebook 02's explorer draws (the padded input with one
window, the convolution matrix ``C`` with that window's row, the output) and the
``ipywidgets`` sliders around it. :func:`draw_conv_geometry` is a plain matplotlib figure and
works everywhere; :func:`interactive_explorer` needs ``ipywidgets`` and a notebook front-end
(JupyterLab, Notebook 7, VS Code, Colab). With inline matplotlib it needs no ``ipympl``, and it
uses only core widgets, so Colab's preinstalled ``ipywidgets`` 7 works as well as version 8.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PADDINGS = ("valid", "same")


def _grid_text(ax: Any, r: float, c: float, text: str, size: float = 7) -> None:
    """Black text with a white outline: readable on light and on dark cells."""
    import matplotlib.patheffects as pe

    ax.text(c, r, text, ha="center", va="center", fontsize=size, color="black",
            path_effects=[pe.withStroke(linewidth=2, foreground="white")])  # fmt: skip


def _rect(ax: Any, row: float, col: float, height: int, width: int, color: str, lw=2.5) -> None:
    import matplotlib.pyplot as plt

    ax.add_patch(plt.Rectangle((col - 0.5, row - 0.5), width, height, fill=False, lw=lw,
                               edgecolor=color))  # fmt: skip


def geometry(n: int, k: int, s: int, padding: str) -> dict[str, Any]:
    """Sizes of a ``k x k``, stride ``s`` convolution of an ``n x n`` one-channel image.

    Returns ``pads`` (``((top, bottom), (left, right))``), ``out`` (output side) and ``C`` (the
    ``(out * out, n * n)`` matrix of the kernel whose taps are numbered ``1 .. k * k`` row by row,
    so each entry of ``C`` names the tap it holds). Raises ValueError when the kernel does not fit.
    """
    from unet_course.lessons import conv

    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    taps = np.arange(1, k * k + 1).reshape(k, k)
    c = conv.conv_matrix(taps, (n, n), s, padding)  # validates n, k, s
    pads = conv.conv_padding((n, n), (k, k), s, padding)
    return {"pads": pads, "out": conv.conv_output_shape((n, n), (k, k), s, padding)[0], "C": c}


def draw_conv_geometry(n: int = 5, k: int = 3, s: int = 2, padding: str = "same",
                       window: int = 0, fig: Any = None) -> Any:  # fmt: skip
    """Draw the padded ``n x n`` input with window ``window`` (counted row by row, clipped to the
    last one), the matrix ``C`` with that window's row, and the output grid. Returns the figure.

    Input cells show their pixel number ``r * n + c`` (the column of ``C`` they feed); padding
    cells show 0. ``C``'s entries are tap numbers ``1 .. k * k`` (0 where nothing is stored).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    g = geometry(n, k, s, padding)
    (pt, pb), (pl, pr) = g["pads"]
    out, c = g["out"], g["C"]
    t = int(np.clip(window, 0, out * out - 1))
    i, j = divmod(t, out)
    if fig is None:
        fig = plt.figure(figsize=(13, 4.3))
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 2.2, 0.7]})
    hp, wp = n + pt + pb, n + pl + pr
    inside = np.zeros((hp, wp))
    inside[pt : pt + n, pl : pl + n] = 1
    axes[0].imshow(inside, cmap="Greys", vmin=-0.6, vmax=2.5)
    for (r, col), v in np.ndenumerate(inside):
        _grid_text(axes[0], r, col, str((r - pt) * n + col - pl) if v else "0",
                   size=7 if hp <= 10 else 5)  # fmt: skip
    _rect(axes[0], pt, pl, n, n, "gray", lw=1.5)
    _rect(axes[0], i * s, j * s, k, k, "red")
    axes[0].set_title(f"padded input {hp}x{wp} (image {n}x{n})\nwindow {t} = output ({i}, {j})",
                      fontsize=9)  # fmt: skip
    axes[1].imshow(c, cmap="viridis", interpolation="nearest", aspect="auto")
    if c.shape[0] <= 16 and c.shape[1] <= 25:  # numbers fit at a readable size; else colours
        for (r, col), v in np.ndenumerate(c):
            if v:
                _grid_text(axes[1], r, col, str(v), size=8)
    _rect(axes[1], t, 0, 1, c.shape[1], "red")
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].set(xlabel=f"column = input pixel (0..{n * n - 1})",
                ylabel=f"row = output pixel (0..{out * out - 1})")  # fmt: skip
    axes[1].set_title(f"C, shape {c.shape}: entry = kernel tap (1..{k * k})", fontsize=9)
    axes[2].imshow(np.arange(out * out).reshape(out, out) == t, cmap="Oranges", vmin=0, vmax=1.5)
    for r, col in np.ndindex(out, out):
        _grid_text(axes[2], r, col, str(r * out + col))
    axes[2].set_title(f"output {out}x{out}", fontsize=9)
    for ax in (axes[0], axes[2]):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"n={n}, k={k}, s={s}, padding='{padding}' pads {pt}+{pb}: H_out = "
                 f"floor(({n} + {pt} + {pb} - {k}) / {s}) + 1 = {out}", fontsize=10)  # fmt: skip
    return fig


def interactive_explorer(max_n: int = 9) -> Any:
    """Sliders for input size, kernel size, stride, padding and window around
    :func:`draw_conv_geometry` (``ipywidgets.interact``; raises ImportError without ipywidgets).

    The window slider ends at the last window of the current setting (``H_out * W_out - 1``).
    A kernel larger than the padded input is reported in words instead of drawn.
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt

    from unet_course.lessons import conv

    def show(n: int, k: int, s: int, padding: str, window: int) -> None:
        try:
            draw_conv_geometry(n, k, s, padding, window)
        except ValueError as err:
            print(f"This setting has no output: {err}")
            return
        plt.show()

    n = w.IntSlider(value=5, min=3, max=max_n, description="input n")
    k = w.IntSlider(value=3, min=1, max=5, description="kernel k")
    s = w.IntSlider(value=2, min=1, max=3, description="stride s")
    padding = w.ToggleButtons(options=list(PADDINGS), value="same", description="padding")
    window = w.IntSlider(value=0, min=0, max=max_n * max_n - 1, description="window")

    def end_at_last_window(_change: Any = None) -> None:
        try:
            out = conv.conv_output_shape((n.value, n.value), (k.value, k.value), s.value,
                                         padding.value)[0]  # fmt: skip
        except ValueError:  # no output: the figure says so in words
            out = 1
        window.max = out * out - 1  # ipywidgets lowers a value above the new max

    for control in (n, k, s, padding):
        control.observe(end_at_last_window, names="value")
    end_at_last_window()
    return w.interact(show, n=n, k=k, s=s, padding=padding, window=window)
