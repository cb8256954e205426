"""Notebook 02's explorer of a convolution's geometry: input size, kernel, stride, padding.

:func:`draw_conv_geometry` is a plain matplotlib figure; :func:`interactive_explorer` wraps it in
core ``ipywidgets`` sliders (versions 7 and 8, inline matplotlib, no ``ipympl``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

PADDINGS = ("valid", "same")


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
    last one), the matrix ``C`` with that window's row, and the output grid, on ``fig`` (a new
    13 x 4.3 inch figure when None). Returns the figure; raises as :func:`geometry`.

    Input cells show their pixel number ``r * n + c`` (the column of ``C`` they feed); padding
    cells show 0. ``C``'s entries are tap numbers ``1 .. k * k`` (0 where nothing is stored).
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from unet_course.lessons.plotting import _box, _outlined

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
        _outlined(axes[0], r, col, str((r - pt) * n + col - pl) if v else "0",
                  size=7 if hp <= 10 else 5, stroke=2)  # fmt: skip
    _box(axes[0], pt, pl, n, n, "gray", lw=1.5)
    _box(axes[0], i * s, j * s, k, k)
    axes[0].set_title(f"padded input {hp}x{wp} (image {n}x{n})\nwindow {t} = output ({i}, {j})",
                      fontsize=9)  # fmt: skip
    axes[1].imshow(c, cmap="viridis", interpolation="nearest", aspect="auto")
    if c.shape[0] <= 16 and c.shape[1] <= 25:  # numbers fit at a readable size; else colours
        for (r, col), v in np.ndenumerate(c):
            if v:
                _outlined(axes[1], r, col, str(v), size=8, stroke=2)
    _box(axes[1], t, 0, 1, c.shape[1])
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].yaxis.set_major_locator(MaxNLocator(integer=True))
    axes[1].set(xlabel=f"column = input pixel (0..{n * n - 1})",
                ylabel=f"row = output pixel (0..{out * out - 1})")  # fmt: skip
    axes[1].set_title(f"C, shape {c.shape}: entry = kernel tap (1..{k * k})", fontsize=9)
    axes[2].imshow(np.arange(out * out).reshape(out, out) == t, cmap="Oranges", vmin=0, vmax=1.5)
    for r, col in np.ndindex(out, out):
        _outlined(axes[2], r, col, str(r * out + col), size=7, stroke=2)
    axes[2].set_title(f"output {out}x{out}", fontsize=9)
    for ax in (axes[0], axes[2]):
        ax.set(xticks=[], yticks=[])
    fig.suptitle(f"n={n}, k={k}, s={s}, padding='{padding}' pads {pt}+{pb}: H_out = "
                 f"floor(({n} + {pt} + {pb} - {k}) / {s}) + 1 = {out}", fontsize=10)  # fmt: skip
    return fig


def interactive_explorer(max_n: int = 9) -> Any:
    """Sliders for input size (up to ``max_n``), kernel size, stride, padding and window around
    :func:`draw_conv_geometry`; returns ``ipywidgets.interact``'s widget. The window slider ends
    at the setting's last window; a kernel larger than the padded input is reported in words.
    Raises ImportError without ``ipywidgets``.
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
