"""Percentile normalisation: NumPy reference and Keras layer agree, and with hand numbers."""

import keras
import numpy as np
import pytest

from unet_course.normalization import PercentileNormalization, percentile_normalize


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
