"""Tests of the course's plotting helpers: they draw what they say, on the axes given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from unet_course.lessons import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_error_overlay_colours_each_kind_of_pixel():
    truth = np.array([[1, 1, 0, 0]], dtype=bool)
    pred = np.array([[1, 0, 1, 0]], dtype=bool)
    _, ax = plt.subplots()
    assert plotting.error_overlay(np.zeros((1, 4)), truth, pred, ax=ax, alpha=0.5) is ax
    layer = np.asarray(ax.images[1].get_array())
    np.testing.assert_allclose(layer[0, 0], (*plotting.TRUE_POSITIVE, 0.5))
    np.testing.assert_allclose(layer[0, 1], (*plotting.FALSE_NEGATIVE, 0.5))
    np.testing.assert_allclose(layer[0, 2], (*plotting.FALSE_POSITIVE, 0.5))
    assert layer[0, 3, 3] == 0  # true negatives stay see-through
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "true positive", "false positive", "false negative"
    ]


def test_error_overlay_refuses_masks_of_different_shapes():
    with pytest.raises(ValueError, match=r"true \(2, 2\), predicted \(2, 3\)"):
        plotting.error_overlay(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 3)))


def test_overlay_mask_paints_only_the_mask():
    mask = np.eye(3, dtype=bool)
    ax = plotting.overlay_mask(np.zeros((3, 3, 3), np.uint8), mask, color=(1, 0, 0), alpha=0.4)
    layer = np.asarray(ax.images[1].get_array())
    assert np.array_equal(layer[..., 3] > 0, mask)
    np.testing.assert_allclose(layer[0, 0], (1, 0, 0, 0.4))


def test_show_labels_black_background_and_distinct_colours():
    labels = np.arange(6).reshape(2, 3)
    ax = plotting.show_labels(labels, title="six")
    rgba = ax.images[0].to_rgba(ax.images[0].get_array())
    np.testing.assert_allclose(rgba[0, 0, :3], 0)  # label 0 is black
    colours = {tuple(np.round(c, 3)) for c in rgba.reshape(-1, 4)[1:]}
    assert len(colours) == 5 and ax.get_title() == "six"
    with pytest.raises(ValueError, match="2-D label map"):
        plotting.show_labels(np.zeros((2, 2, 2), int))


def test_plot_history_train_solid_validation_dashed_whole_epochs():
    history = {"loss": [0.9, 0.5, 0.4], "val_loss": [1.0, 0.7, 0.6], "dice": [0.1, 0.5, 0.7]}
    ax = plotting.plot_history(history, ["loss", "dice"])
    styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
    assert styles == {"train loss": "-", "validation loss": "--", "train dice": "-"}
    ax.figure.canvas.draw()
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert ax.get_xlabel() == "epoch"
    with pytest.raises(ValueError, match="history has no \\['iou'\\]"):
        plotting.plot_history(history, ["iou"])


def test_image_grid_hides_spare_axes():
    fig, axes = plotting.image_grid([np.zeros((4, 4))] * 3, titles=["a", "b", "c"], ncols=2)
    assert axes.shape == (2, 2) and not axes[1, 1].axison
    assert [ax.get_title() for ax in axes.flat][:3] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="at least one image"):
        plotting.image_grid([])
