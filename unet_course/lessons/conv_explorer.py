"""Notebook 02's explorer of a convolution's geometry: a figure, and ``ipywidgets`` sliders."""

from __future__ import annotations

from typing import Any

import numpy as np

PADDINGS = ("valid", "same")


def geometry(n: int, k: int, s: int, padding: str) -> dict[str, Any]:
    """``pads``, ``out`` (output side) and ``C`` (for taps numbered ``1 .. k * k``) of a ``k x k``,
    stride ``s`` convolution of an ``n x n`` image. Raises ValueError when the kernel does not fit.
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
    """:func:`~unet_course.lessons.plotting.draw_conv_window` of an ``n x n`` image of pixel
    numbers ``r * n + c`` (the columns of ``C``; padding shows 0) by a ``k x k`` kernel of tap
    numbers ``1 .. k * k``, with the output cells numbered as the rows of ``C`` and the output-size
    formula as title. Returns the figure; raises as :func:`geometry`.
    """
    from unet_course.lessons.plotting import _box, _value_grid, draw_conv_window

    g = geometry(n, k, s, padding)
    (pt, pb), out = g["pads"][0], g["out"]
    fig = draw_conv_window(np.arange(n * n).reshape(n, n), np.arange(1, k * k + 1).reshape(k, k),
                           s, padding, window, fig)  # fmt: skip
    fig.axes[2].clear()
    _value_grid(fig.axes[2], np.arange(out * out).reshape(out, out), f"output {out}x{out}",
                "Oranges")  # fmt: skip
    _box(fig.axes[2], *divmod(int(np.clip(window, 0, out * out - 1)), out), 1, 1)
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
