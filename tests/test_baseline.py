"""The classical baseline, checked against scikit-image and NumPy computed independently."""

import numpy as np
import pytest
from scipy import ndimage
from skimage.color import rgb2gray
from skimage.filters import threshold_otsu

from unet_course import baseline, postprocess, scoring
from unet_course.data import make_nuclei


@pytest.fixture(scope="module")
def slides():
    return make_nuclei(6, size=96, seed=5)


def test_grey_is_skimage_rgb2gray_and_flipped_for_brightfield(slides):
    images, _ = slides
    for image in images:
        expected = rgb2gray(image) * 255  # rgb2gray scales uint8 to [0, 1]
        grey = baseline.to_grey(image, "bright")
        np.testing.assert_allclose(grey, expected, atol=1e-6)
        np.testing.assert_allclose(baseline.to_grey(image, "dark"), -expected, atol=1e-6)


def test_auto_polarity_finds_the_style_of_each_image():
    fluo, _ = make_nuclei(3, size=96, seed=1, style="fluorescence")
    bright, _ = make_nuclei(3, size=96, seed=1, style="brightfield")
    for image in fluo:
        assert np.array_equal(baseline.to_grey(image), baseline.to_grey(image, "bright"))
    for image in bright:
        assert np.array_equal(baseline.to_grey(image), baseline.to_grey(image, "dark"))


def test_otsu_mask_is_skimage_threshold_otsu(slides):
    images, _ = slides
    for image in images:
        grey = rgb2gray(image)
        if np.median(grey) > (grey.min() + grey.max()) / 2:
            grey = -grey
        np.testing.assert_array_equal(baseline.otsu_mask(image), grey > threshold_otsu(grey))


def test_components_are_scipy_connected_regions():
    image = np.zeros((40, 40), np.uint8)
    image[5:15, 5:15] = 200
    image[20:30, 22:35] = 180
    image[2, 30] = 90  # one pixel, below min_size
    labels = baseline.otsu_instances(image, "components")
    expected, _ = ndimage.label(image > 100)
    assert labels.max() == 2
    np.testing.assert_array_equal(labels > 0, expected > 0)


def test_watershed_splits_two_touching_discs_that_components_merge():
    yy, xx = np.mgrid[:60, :80]
    discs = ((yy - 30) ** 2 + (xx - 25) ** 2 < 15**2) | ((yy - 30) ** 2 + (xx - 52) ** 2 < 15**2)
    image = np.where(discs, 200, 20).astype(np.uint8)
    assert baseline.otsu_instances(image, "components").max() == 1
    assert baseline.otsu_instances(image, "watershed").max() == 2


def test_scores_match_a_hand_count(slides):
    images, labels = slides
    scores = baseline.baseline_scores(images, labels)
    masks = [baseline.otsu_mask(im) for im in images]
    tp = sum(np.sum(m & (t > 0)) for m, t in zip(masks, labels, strict=False))
    fp = sum(np.sum(m & (t == 0)) for m, t in zip(masks, labels, strict=False))
    fn = sum(np.sum(~m & (t > 0)) for m, t in zip(masks, labels, strict=False))
    assert scores["otsu_watershed"]["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert scores["otsu_watershed"]["iou"] == pytest.approx(tp / (tp + fp + fn))
    found = [postprocess.label_instances(m.astype(np.float32), 0.5, "components") for m in masks]
    assert scores["otsu_components"]["dsb_map"] == pytest.approx(
        np.mean([scoring.dsb_score(t, f) for t, f in zip(labels, found, strict=False)]))


def test_bad_input_is_refused_with_what_was_given():
    with pytest.raises(ValueError, match="polarity"):
        baseline.to_grey(np.zeros((4, 4)), "upside-down")
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        baseline.to_grey(np.zeros(4))
    with pytest.raises(TypeError, match="dtype"):
        baseline.to_grey(np.array([["a"]]))
    with pytest.raises(ValueError, match="as many images"):
        baseline.baseline_scores([np.zeros((4, 4))], [])
    assert not baseline.otsu_mask(np.full((8, 8), 7)).any()  # flat: nothing to split


def test_grey_of_any_range_uses_the_bt709_weights_unscaled():
    image = np.random.default_rng(2).uniform(0, 4000, (7, 9, 3))  # e.g. 12-bit values as float
    np.testing.assert_allclose(baseline.to_grey(image, "bright"),
                               image @ np.array([0.2125, 0.7154, 0.0721]), rtol=1e-12)
    np.testing.assert_allclose(baseline.to_grey(image[..., :2], "bright"), image[..., :2].mean(-1))


def test_classical_scores_match_a_hand_count(slides):
    images, labels = slides
    settings = dict(baseline.CLASSICAL_DEFAULT)
    scores = baseline.classical_scores(images, labels, settings)
    found = [baseline.classical_instances(im, **settings) > 0 for im in images]
    tp = sum(np.sum(f & (t > 0)) for f, t in zip(found, labels, strict=True))
    wrong = sum(np.sum(f != (t > 0)) for f, t in zip(found, labels, strict=True))
    assert scores["dice"] == pytest.approx(2 * tp / (2 * tp + wrong))
    assert scores["iou"] == pytest.approx(tp / (tp + wrong))
