"""The convolution explorer's figure: sizes against Keras, the window clipped, bad input refused."""

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from unet_course.lessons import conv_explorer  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("n, k, s, padding", [(5, 3, 2, "same"), (7, 4, 3, "valid"),
                                              (6, 2, 1, "same"), (4, 1, 3, "valid")])
def test_geometry_matches_keras_and_numbers_the_taps(n, k, s, padding):
    g = conv_explorer.geometry(n, k, s, padding)
    out = keras.layers.Conv2D(1, k, strides=s, padding=padding).compute_output_shape(
        (1, n, n, 1))[1]
    assert g["out"] == out and g["C"].shape == (out * out, n * n)
    assert set(np.unique(g["C"])) <= set(range(k * k + 1))  # 0 or a tap number


def test_draw_clips_the_window_and_names_the_output_size():
    fig = conv_explorer.draw_conv_geometry(5, 3, 2, "same", window=99)
    assert "= 3" in fig._suptitle.get_text() and "window 8" in fig.axes[0].get_title()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="padding"):
        conv_explorer.geometry(5, 3, 1, "full")
    with pytest.raises(ValueError, match="larger"):
        conv_explorer.geometry(3, 5, 1, "valid")


def test_interactive_explorer_builds_its_sliders():
    pytest.importorskip("ipywidgets")
    widget = conv_explorer.interactive_explorer()
    names = {c.description for c in widget.widget.children if hasattr(c, "description")}
    assert {"input n", "kernel k", "stride s", "padding", "window"} <= names


def test_the_window_slider_ends_at_the_last_window():
    pytest.importorskip("ipywidgets")
    widget = conv_explorer.interactive_explorer()
    sliders = {c.description: c for c in widget.widget.children if hasattr(c, "description")}
    n, k, s, padding, window = (sliders[name] for name in
                                ("input n", "kernel k", "stride s", "padding", "window"))
    assert window.max == 3 * 3 - 1  # the default: 5x5, k=3, s=2, 'same' -> 3x3 windows
    window.value = window.max
    n.value, k.value, s.value, padding.value = 9, 1, 1, "same"
    assert window.max == 9 * 9 - 1
    window.value = 80
    k.value, s.value, padding.value = 4, 3, "valid"  # Conv2D gives 2x2 outputs here
    want = keras.layers.Conv2D(1, 4, strides=3).compute_output_shape((1, 9, 9, 1))[1]
    assert window.max == want * want - 1 and window.value == window.max
    n.value, k.value = 3, 5  # a kernel larger than the image: no output, one position left
    assert window.max == 0
