"""Losses: BCE, soft Dice, BCE + Dice and weighted BCE against Keras and NumPy references.

The JAX backend and the `.keras` round trip are covered in test_metrics.py (one subprocess
per backend runs both modules).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from unet_course import losses


def batch(seed, shape=(3, 12, 12, 1)):
    rng = np.random.default_rng(seed)
    t = (rng.random(shape) < 0.3).astype("float32")
    p = rng.uniform(0.01, 0.99, shape).astype("float32")
    return t, p


def np_clip(p):
    """Probabilities clipped to [1e-7, 1 - 1e-7] as float32 does it, then float64."""
    return np.clip(p.astype("float32"), np.float32(1e-7), np.float32(1 - 1e-7)).astype("float64")


def np_bce(t, p):
    p = np_clip(p)
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


def np_soft_dice(t, p, smooth=1.0):
    axes = tuple(range(1, t.ndim))
    inter = (t * p).sum(axes)
    return 1 - (2 * inter + smooth) / (t.sum(axes) + p.sum(axes) + smooth)


def value(x):
    return keras.ops.convert_to_numpy(x)


@pytest.mark.parametrize("seed", range(4))
def test_bce_matches_keras_builtin(seed):
    t, p = batch(seed)
    ours = value(losses.binary_crossentropy(t, p))
    assert ours.shape == (3,)
    ref = value(keras.losses.BinaryCrossentropy(reduction=None)(t, p))  # (B, H, W)
    np.testing.assert_allclose(ours, ref.mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(ours, np_bce(t, p).mean(axis=(1, 2, 3)), rtol=1e-5)


def test_bce_from_logits_matches_probabilities_and_keras():
    rng = np.random.default_rng(1)
    t, _ = batch(1)
    logits = rng.normal(0, 4, t.shape).astype("float32")
    logits[0, 0, 0, 0] = 80.0  # sigmoid rounds to 1 in float32; the logit form stays exact
    ours = value(losses.binary_crossentropy(t, logits, from_logits=True))
    ref = value(keras.losses.BinaryCrossentropy(from_logits=True, reduction=None)(t, logits))
    np.testing.assert_allclose(ours, ref.mean(axis=(1, 2)), rtol=1e-5)
    x = logits.astype("float64")
    exact = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    np.testing.assert_allclose(ours, exact.mean(axis=(1, 2, 3)), rtol=1e-5)


@pytest.mark.parametrize("smooth", [0.0, 1.0, 10.0])
def test_soft_dice_matches_numpy(smooth):
    t, p = batch(2)
    t[1] = 0  # one image with empty truth
    got = value(losses.soft_dice(t, p, smooth=smooth))
    np.testing.assert_allclose(got, np_soft_dice(t, p, smooth), rtol=1e-5)
    loss = float(losses.SoftDiceLoss(smooth=smooth)(t, p))
    assert loss == pytest.approx(np_soft_dice(t, p, smooth).mean(), rel=1e-5)


def test_soft_dice_hand_worked_and_extremes():
    t = np.array([[1, 1, 0, 0]], "float32")
    p = np.array([[1.0, 0.5, 0.5, 0.0]], "float32")
    # inter = 1.5, sum p = 2, sum t = 2 -> 1 - (3 + 1) / (4 + 1) = 0.2
    assert float(losses.SoftDiceLoss()(t, p)) == pytest.approx(0.2)
    assert float(losses.SoftDiceLoss(smooth=0)(t, t)) == pytest.approx(0.0)
    assert float(losses.SoftDiceLoss(smooth=0)(t, 1 - t)) == pytest.approx(1.0)
    z = np.zeros((1, 4), "float32")
    assert float(losses.SoftDiceLoss()(z, z)) == pytest.approx(0.0)  # empty vs empty: no cost


def test_bce_dice_is_the_weighted_sum():
    t, p = batch(3)
    bce = np_bce(t, p).mean(axis=(1, 2, 3))
    sd = np_soft_dice(t, p)
    for wb, wd in [(1.0, 1.0), (0.5, 2.0), (0.0, 1.0), (1.0, 0.0)]:
        got = float(losses.BCEDiceLoss(bce_weight=wb, dice_weight=wd)(t, p))
        assert got == pytest.approx((wb * bce + wd * sd).mean(), rel=1e-5)


def test_per_image_sample_weight():
    t, p = batch(4)
    w = np.array([1.0, 0.0, 3.0], "float32")
    per_image = np_bce(t, p).mean(axis=(1, 2, 3)) + np_soft_dice(t, p)
    got = float(losses.BCEDiceLoss()(t, p, sample_weight=w))
    assert got == pytest.approx((per_image * w).mean(), rel=1e-5)


def test_weighted_bce_uses_pixel_weight_map():
    t, p = batch(5)
    rng = np.random.default_rng(5)
    w = rng.uniform(0, 10, t.shape[:3]).astype("float32")  # (B, H, W)
    got = float(losses.WeightedBCELoss()(t, p, sample_weight=w))
    assert got == pytest.approx((np_bce(t, p)[..., 0] * w).mean(), rel=1e-5)
    plain = float(losses.WeightedBCELoss()(t, p))
    assert plain == pytest.approx(np_bce(t, p).mean(), rel=1e-5)
    ones = float(losses.WeightedBCELoss()(t, p, sample_weight=np.ones_like(w)))
    assert ones == pytest.approx(plain, rel=1e-6)
    # weight only one pixel: the loss is that pixel's BCE scaled by 1 / (B H W)
    w1 = np.zeros_like(w)
    w1[2, 3, 4] = 1.0
    one = float(losses.WeightedBCELoss()(t, p, sample_weight=w1))
    assert one == pytest.approx(np_bce(t, p)[2, 3, 4, 0] / w.size, rel=1e-5)


def test_weighted_bce_in_model_fit_with_weight_maps():
    keras.utils.set_random_seed(0)
    t, p = batch(6, shape=(4, 8, 8, 1))
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same",
                                                    activation="sigmoid")(inputs))
    model.compile("sgd", loss=losses.WeightedBCELoss())
    w = np.ones(t.shape[:3], "float32")
    base = model.evaluate(p, t, sample_weight=w, verbose=0)
    doubled = model.evaluate(p, t, sample_weight=2 * w, verbose=0)
    assert doubled == pytest.approx(2 * base, rel=1e-5)
    hist = model.fit(p, t, sample_weight=w, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(hist.history["loss"][0])


def np_classes_dice(t, p, smooth=1.0):
    """Categorical cross-entropy + mean soft Dice of classes 1.. per image, in float64."""
    pc = np_clip(p)
    ce = -(t * np.log(pc)).sum(-1).mean(axis=(1, 2))
    inter, total = (t * pc).sum(axis=(1, 2)), t.sum(axis=(1, 2)) + pc.sum(axis=(1, 2))
    return ce + (1 - (2 * inter + smooth) / (total + smooth))[:, 1:].mean(-1)


@pytest.mark.parametrize("smooth", [0.5, 1.0])
def test_classes_dice_matches_numpy_with_saturated_and_float16_outputs(smooth):
    rng = np.random.default_rng(12)
    t = np.eye(3, dtype="float32")[rng.integers(0, 3, (3, 10, 10))]
    p = rng.dirichlet([1.0, 1.0, 1.0], (3, 10, 10)).astype("float32")
    p[0, :4] = t[0, :4]  # exact one-hot: right where t is, log(0) elsewhere
    p[1, :4] = np.roll(t[1, :4], 1, axis=-1)  # confidently wrong: -log(1e-7) per pixel
    want = np_classes_dice(t, p, smooth)
    got = value(losses.ClassesDiceLoss(smooth=smooth, reduction=None)(t, p))
    np.testing.assert_allclose(got, want, rtol=1e-5)
    got16 = float(losses.ClassesDiceLoss(smooth=smooth)(t, p.astype("float16")))
    assert got16 == pytest.approx(np_classes_dice(t, p.astype("float16"), smooth).mean(),
                                  rel=1e-4)


def test_saturated_activations_in_a_compiled_model_are_clipped_not_read_as_logits():
    """TensorFlow's cross-entropy swaps a sigmoid / softmax output for its logits when it can;
    the losses clip first, so a compiled model's loss is the clipped formula of its output."""
    x = np.linspace(-1, 1, 2 * 6 * 6).reshape(2, 6, 6, 1).astype("float32")
    t = (x > 0.3).astype("float32")
    for activation, loss, reference, truth in [
        ("sigmoid", losses.BCEDiceLoss(), lambda t, p: (np_bce(t, p).mean(axis=(1, 2, 3))
                                                        + np_soft_dice(t, p)), t),
        ("softmax", losses.ClassesDiceLoss(), np_classes_dice,
         np.concatenate([1 - t, t, np.zeros_like(t)], -1)),
    ]:
        inputs = keras.Input((6, 6, 1))
        layer = keras.layers.Conv2D(truth.shape[-1], 1, activation=activation)
        model = keras.Model(inputs, layer(inputs))
        kernel = np.array([400.0, -400.0, 0.0][: truth.shape[-1]], "float32").reshape(1, 1, 1, -1)
        layer.set_weights([kernel, np.full(truth.shape[-1], -20.0, "float32")])
        model.compile("sgd", loss=loss)
        out = model.predict(x, verbose=0)
        assert np.any(out == 1.0) and np.any(out < 1e-7)  # saturated in float32
        got = model.evaluate(x, truth, batch_size=2, verbose=0)
        assert got == pytest.approx(reference(truth, out).mean(), rel=1e-5), activation


def test_float16_inputs_are_finite_and_match_float32():
    t, p = batch(7, shape=(2, 256, 256, 1))
    p[0, :8] = 0.0  # exact zeros and ones where a naive log gives -inf
    p[1, :8] = 1.0
    p16 = p.astype("float16")
    for loss in (losses.BCEDiceLoss(), losses.SoftDiceLoss(), losses.WeightedBCELoss()):
        got16 = float(loss(t, p16))
        got32 = float(loss(t, p16.astype("float32")))
        assert np.isfinite(got16)
        assert got16 == pytest.approx(got32, rel=1e-6)
    # the sums over 65536 pixels would overflow float16 (max 65504) if done in float16
    ones = np.ones((1, 256, 256, 1), "float16")
    assert float(losses.SoftDiceLoss()(ones, ones)) == pytest.approx(0.0, abs=1e-6)


def test_float16_gradients_are_finite():
    t, p = batch(8)
    p[:, :2] = 0.0
    p[:, 2:4] = 1.0
    x = tf.Variable(p.astype("float16"))
    with tf.GradientTape() as tape:
        loss = losses.BCEDiceLoss()(t, x)
    grad = tape.gradient(loss, x).numpy()
    assert grad.dtype == np.float16
    assert np.all(np.isfinite(grad))


def test_mixed_precision_training_step_is_finite():
    keras.utils.set_random_seed(1)
    t, p = batch(9, shape=(4, 16, 16, 1))
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", dtype="mixed_float16")(inputs)
    out = keras.layers.Conv2D(1, 1, activation="sigmoid", dtype="mixed_float16")(x)
    model = keras.Model(inputs, out)
    assert model.output.dtype == "float16"
    model.compile(keras.optimizers.Adam(1e-2), loss=losses.BCEDiceLoss())
    hist = model.fit(p, t, epochs=3, batch_size=2, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))


def test_configs_round_trip():
    for loss in (losses.SoftDiceLoss(smooth=2.0, from_logits=True),
                 losses.BCEDiceLoss(bce_weight=0.3, dice_weight=2.0),
                 losses.WeightedBCELoss(from_logits=True)):
        cfg = keras.saving.serialize_keras_object(loss)
        assert cfg["registered_name"] == f"unet_course>{type(loss).__name__}"
        back = keras.saving.deserialize_keras_object(cfg)
        assert type(back) is type(loss)
        assert back.get_config() == loss.get_config()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="smooth"):
        losses.SoftDiceLoss(smooth=-1)
    with pytest.raises(ValueError, match="dice_weight"):
        losses.BCEDiceLoss(dice_weight=-0.5)
    with pytest.raises(TypeError, match="bce_weight"):
        losses.BCEDiceLoss(bce_weight="1")
