"""Percentile normalisation: NumPy reference and Keras layer agree, and with hand numbers."""

import keras
import numpy as np
import pytest

from unet_course import files, normalization
from unet_course.files import one_colour_as_grey
from unet_course.normalization import (
    PercentileNormalization,
    appearance_note,
    percentile_normalize,
    polarity_in_doubt,
)


def test_hand_example():
    image = np.arange(101, dtype=np.uint16)  # percentile q of 0..100 is q itself
    out = percentile_normalize(image, low=10, high=90)
    assert out[10] == pytest.approx(0, abs=1e-6) and out[90] == pytest.approx(1, abs=1e-6)
    assert out[50] == pytest.approx(0.5, abs=1e-6)


def test_bit_depth_and_exposure_do_not_matter():
    rng = np.random.default_rng(0)
    base = rng.random((32, 32, 3))
    eight = np.round(base * 200).astype(np.uint8)
    twelve = eight.astype(np.uint16) * 16 + 100  # the same picture, 12-bit, with an offset
    np.testing.assert_allclose(percentile_normalize(eight), percentile_normalize(twelve),
                               atol=1e-4)


def test_layer_equals_numpy_per_image_and_survives_saving(tmp_path):
    x = np.random.default_rng(1).integers(0, 4096, (3, 20, 24, 3)).astype(np.float32)
    x[1] *= 0.01  # a dim image
    layer_out = keras.ops.convert_to_numpy(PercentileNormalization()(x))
    expected = np.stack([percentile_normalize(im) for im in x])
    np.testing.assert_allclose(layer_out, expected, atol=1e-5)
    model = keras.Sequential([keras.Input((None, None, 3)), PercentileNormalization(low=2)])
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)


def test_bad_percentiles_are_refused():
    with pytest.raises(ValueError, match="low=50, high=10"):
        PercentileNormalization(low=50, high=10)
    with pytest.raises(TypeError, match="dtype"):
        percentile_normalize(np.array(["x"]))


def _grey_slide(seed: int = 0) -> np.ndarray:
    """A grey synthetic fluorescence slide as (H, W) uint8."""
    from unet_course.data import make_nuclei

    while True:
        images, _ = make_nuclei(1, size=64, seed=seed, style="fluorescence")
        image = images[0].astype(int)
        if (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all():
            return images[0][..., 0]
        seed += 1


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_a_slide_saved_in_one_dye_colour_comes_back_as_its_grey_brightness(channel):
    grey = _grey_slide()
    coloured = np.zeros(grey.shape + (3,), np.uint8)
    coloured[..., channel] = grey  # DAPI in blue, GFP in green, ...
    out = one_colour_as_grey(coloured)
    assert out.dtype == np.float32 and out.shape == coloured.shape
    for k in range(3):  # the brightness is the one channel that holds it, three times
        np.testing.assert_allclose(out[..., k], grey, atol=1e-3)


def test_a_tinted_slide_comes_back_proportional_to_its_grey_brightness():
    grey = _grey_slide(3).astype(np.float64)
    tint = np.array([0.0, 0.8, 0.5])  # cyan-ish: one empty channel
    out = one_colour_as_grey(grey[..., None] * tint)
    # independent of the eigenvectors: the brightness along the unit tint, by hand
    np.testing.assert_allclose(out[..., 0], grey * np.linalg.norm(tint), rtol=1e-5, atol=1e-3)


def test_one_colour_as_grey_lives_in_files_and_is_reachable_from_normalization():
    assert normalization.one_colour_as_grey is files.one_colour_as_grey
    assert (normalization.LOW, normalization.HIGH) == (files.LOW, files.HIGH) == (1.0, 99.8)


def test_grey_bright_field_and_two_dye_images_are_returned_as_they_are():
    from unet_course.data import make_nuclei

    grey = np.repeat(_grey_slide()[..., None], 3, axis=-1)
    assert one_colour_as_grey(grey) is grey
    bright, _ = make_nuclei(12, size=96, seed=5, style="brightfield")
    for image in bright:  # purple nuclei on pink: two hues, not one colour
        assert one_colour_as_grey(image) is image
    a, b = _grey_slide(1), _grey_slide(2)  # two dyes on two structures
    two = np.stack([a, b, np.zeros_like(a)], axis=-1)
    assert one_colour_as_grey(two) is two
    for other in (grey[..., :1], np.zeros((0, 0, 3)), np.full((4, 4, 3), np.nan)):
        assert one_colour_as_grey(other) is other


def test_grey_bright_field_is_in_doubt_and_fluorescence_and_colour_are_not():
    from skimage.color import rgb2gray

    from unet_course.data import make_nuclei

    slides, _ = make_nuclei(8, size=128, seed=5, style="brightfield")
    for slide in slides:
        assert not polarity_in_doubt(slide)  # in colour: the networks know bright-field
        assert polarity_in_doubt(np.repeat(rgb2gray(slide)[..., None], 3, axis=-1))  # dark on light
    fluorescence = np.repeat(_grey_slide()[..., None], 3, axis=-1)
    assert not polarity_in_doubt(fluorescence)
    assert polarity_in_doubt(255 - fluorescence)  # the same slide negated


def test_polarity_doubt_is_the_median_against_the_range_by_hand():
    image = np.zeros((30, 30, 3), np.uint8)  # percentiles of 0 / 1 / 2 laid out by hand
    image[:10] = 100
    image[10:20] = 20 + 1  # the median, 21: 0.21 of the way from 0 to 100
    assert not polarity_in_doubt(image)
    image[10:20] = 40  # 0.4 of the way: in doubt
    assert polarity_in_doubt(image)
    for other in (image[..., :1], np.zeros((0, 0, 3)), np.full((4, 4, 3), np.nan),
                  np.full((4, 4, 3), 7)):
        assert not polarity_in_doubt(other)


def test_the_appearance_note_names_what_is_done_and_spots_a_composite_of_dyes():
    from unet_course.data import make_nuclei

    grey = np.repeat(_grey_slide()[..., None], 3, axis=-1)
    assert appearance_note(grey) == ""
    blue = np.zeros_like(grey)
    blue[..., 2] = grey[..., 0]
    assert appearance_note(blue) == "one colour: predicted as grey"
    assert "negated" in appearance_note(255 - grey)
    assert appearance_note(255 - grey, polarity=False) == ""  # older models: no polarity step
    two = blue.copy()
    two[..., 1] = np.roll(grey[..., 0], 20, axis=1)  # another structure in green
    assert "composite" in appearance_note(two)
    bright, _ = make_nuclei(6, size=96, seed=2, style="brightfield")
    assert all("stained" in appearance_note(image) for image in bright)


def _stained_slide() -> tuple[np.ndarray, np.ndarray]:
    """Dark purple discs on a light lavender field (uint8 RGB) and the discs' mask."""
    yy, xx = np.mgrid[:64, :80]
    mask = ((yy - 20) ** 2 + (xx - 20) ** 2 < 100) | ((yy - 44) ** 2 + (xx - 56) ** 2 < 144)
    image = np.empty((64, 80, 3), np.uint8)
    image[:] = (205, 190, 230)  # lavender
    image[mask] = (90, 40, 140)  # haematoxylin purple
    noise = np.random.default_rng(0).integers(-6, 7, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8), mask


def test_a_stained_slide_becomes_its_negated_grey_brightness_by_hand():
    from unet_course.normalization import stain_as_fluorescence

    image, mask = _stained_slide()
    out = stain_as_fluorescence(image)
    assert out.dtype == np.float32 and out.shape == image.shape and files.is_grey(out)
    luma = image.astype(np.float64) @ [0.2125, 0.7154, 0.0721]  # ITU-R BT.709, by hand
    np.testing.assert_allclose(out[..., 0], 255 - luma, atol=1e-3)
    deeper = stain_as_fluorescence(image.astype(np.uint16) * 40 + 300)  # another bit depth
    np.testing.assert_allclose(deeper[..., 0], 65535 - (40 * luma + 300), atol=1e-2)
    assert out[..., 0][mask].min() > out[..., 0][~mask].max()  # nuclei bright, field dark
    assert not polarity_in_doubt(out)  # now looks like fluorescence
    as_float = stain_as_fluorescence(image.astype(np.float32) / 255)
    assert as_float.dtype == np.float32
    np.testing.assert_allclose(as_float[..., 0], -luma / 255, atol=1e-3)


def test_grey_one_colour_and_dark_field_images_are_not_stains():
    from unet_course.normalization import stain_as_fluorescence

    grey = np.repeat(_grey_slide()[..., None], 3, axis=-1)
    blue = np.zeros_like(grey)
    blue[..., 2] = grey[..., 0]  # DAPI saved in blue
    two = blue.copy()
    two[..., 1] = np.roll(grey[..., 0], 20, axis=1)  # a composite of two dyes on black
    image, _ = _stained_slide()
    for other in (grey, 255 - grey, blue, two, image[..., :1], np.zeros((0, 0, 3)),
                  np.full((4, 4, 3), np.nan), np.full((8, 8, 3), (200, 100, 50), np.uint8)):
        assert stain_as_fluorescence(other) is other
