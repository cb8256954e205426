"""Dice and IoU: the Keras metrics and the NumPy Dice against scikit-learn and Keras."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score

from unet_course import losses, metrics


def sk_dice(t, p, sample_weight=None):
    return f1_score(t.ravel(), p.ravel(), zero_division=1.0, sample_weight=sample_weight)


def sk_iou(t, p, sample_weight=None):
    return jaccard_score(t.ravel(), p.ravel(), zero_division=1.0, sample_weight=sample_weight)


def random_batch(rng, batch=4, size=16, p_true=0.3):
    """Truth (B, H, W, 1) float32 0/1 and probabilities correlated with it."""
    t = (rng.random((batch, size, size, 1)) < p_true).astype("float32")
    prob = np.clip(0.6 * t + 0.5 * rng.random(t.shape), 0, 1).astype("float32")
    return t, prob


def keras_result(metric, t, p, sample_weight=None):
    metric.reset_state()
    metric.update_state(t, p, sample_weight=sample_weight)
    return float(keras.ops.convert_to_numpy(metric.result()))


@pytest.mark.parametrize("seed", range(6))
def test_random_masks_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    threshold = [0.3, 0.5, 0.7][seed % 3]
    t, prob = random_batch(rng, p_true=0.05 + 0.15 * seed)
    pred = prob >= threshold
    want_dice, want_iou = sk_dice(t, pred), sk_iou(t, pred)
    assert keras_result(metrics.Dice(threshold), t, prob) == pytest.approx(want_dice, abs=1e-6)
    assert keras_result(metrics.IoU(threshold), t, prob) == pytest.approx(want_iou, abs=1e-6)
    assert metrics.dice_np(t, pred) == pytest.approx(want_dice, abs=1e-12)


EDGE_CASES = {
    "empty prediction": (np.eye(8), np.zeros((8, 8))),
    "empty truth": (np.zeros((8, 8)), np.eye(8)),
    "both empty": (np.zeros((8, 8)), np.zeros((8, 8))),
    "all ones": (np.ones((8, 8)), np.ones((8, 8))),
    "all ones vs half": (np.ones((8, 8)), np.tri(8)),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases_match_sklearn(case):
    t, p = (a.astype("float32")[None, ..., None] for a in EDGE_CASES[case])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want_dice, want_iou = sk_dice(t, p), sk_iou(t, p)
    assert keras_result(metrics.Dice(), t, p) == pytest.approx(want_dice, abs=1e-6)
    assert keras_result(metrics.IoU(), t, p) == pytest.approx(want_iou, abs=1e-6)
    assert metrics.dice_np(t, p) == pytest.approx(want_dice)


def test_empty_value_is_configurable_and_only_used_when_both_empty():
    z = np.zeros((1, 4, 4, 1), "float32")
    assert keras_result(metrics.Dice(empty_value=0.0), z, z) == 0.0
    assert keras_result(metrics.IoU(empty_value=0.25), z, z) == 0.25
    assert metrics.dice_np(z, z, empty_value=0.0) == 0.0
    one = z.copy()
    one[0, 0, 0, 0] = 1
    assert keras_result(metrics.Dice(empty_value=0.7), one, z) == 0.0


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_iou_matches_keras_binary_iou(threshold):
    rng = np.random.default_rng(7)
    t, prob = random_batch(rng, batch=3, size=20)
    ref = keras.metrics.BinaryIoU(target_class_ids=[1], threshold=threshold)
    ref.update_state(t, prob)
    ours = metrics.IoU(threshold)
    ours.update_state(t, prob)
    assert float(ours.result()) == pytest.approx(float(ref.result()), abs=1e-6)


def test_threshold_is_inclusive_like_binary_iou():
    t = np.array([[1.0, 1.0, 0.0]], "float32")
    p = np.array([[0.5, 0.49, 0.5]], "float32")
    # pixel 0: TP (0.5 >= 0.5), pixel 1: FN, pixel 2: FP
    assert keras_result(metrics.IoU(0.5), t, p) == pytest.approx(1 / 3)
    assert keras_result(metrics.Dice(0.5), t, p) == pytest.approx(2 / 4)


def test_iou_is_binary_iou_with_the_course_truth_rule_and_empty_value():
    assert isinstance(metrics.IoU(), keras.metrics.BinaryIoU)
    t = np.array([[0.7, 0.7, 0.2, 0.0]], "float32")  # soft truth: foreground where >= 0.5
    p = np.array([[0.4, 0.39, 0.4, 0.1]], "float32")  # TP (p == threshold), FN, FP, TN
    assert keras_result(metrics.IoU(0.4), t, p) == pytest.approx(1 / 3)
    assert keras_result(metrics.Dice(0.4), t, p) == pytest.approx(2 / 4)
    z = np.zeros((1, 4), "float32")  # nothing to find: BinaryIoU says 0, the course 1
    assert keras_result(keras.metrics.BinaryIoU([1]), z, z) == 0.0
    assert keras_result(metrics.IoU(), z, z) == 1.0


def test_metric_configs_saved_by_the_earlier_counting_metrics_still_load():
    for cls, name in (("Dice", "dice"), ("IoU", "iou")):
        saved = {"module": "unet_course.metrics", "class_name": cls,
                 "config": {"name": name, "dtype": "float32", "threshold": 0.3,
                            "empty_value": 0.5},
                 "registered_name": f"unet_course>{cls}"}
        back = keras.saving.deserialize_keras_object(saved)
        assert type(back) is getattr(metrics, cls)
        assert (back.threshold, back.empty_value, back.name) == (0.3, 0.5, name)
        assert back.get_config() == saved["config"]


def test_epoch_accumulation_is_not_mean_of_batch_ratios():
    # Batch 1: a large object predicted perfectly. Batch 2: a single pixel missed.
    big = np.zeros((1, 32, 32, 1), "float32")
    big[0, 4:28, 4:28] = 1
    tiny = np.zeros((1, 32, 32, 1), "float32")
    tiny[0, 0, 0] = 1
    batches = [(big, big), (tiny, np.zeros_like(tiny))]
    for metric, ref in [(metrics.Dice(), sk_dice), (metrics.IoU(), sk_iou)]:
        ratios = []
        for t, p in batches:
            metric.update_state(t, p)
            ratios.append(ref(t, p))
        pooled = ref(np.concatenate([b[0] for b in batches]),
                     np.concatenate([b[1] for b in batches]))
        assert float(metric.result()) == pytest.approx(pooled, abs=1e-6)
        assert np.mean(ratios) == pytest.approx(0.5)  # the classic bug's answer
        assert pooled > 0.99  # 576 of 577 foreground pixels found
        metric.reset_state()
        assert float(metric.result()) == 1.0  # nothing seen: empty_value


def test_iou_dice_identity():
    rng = np.random.default_rng(3)
    for _ in range(20):
        t, prob = random_batch(rng, batch=2, size=12, p_true=rng.uniform(0.05, 0.9))
        d = keras_result(metrics.Dice(), t, prob)
        j = keras_result(metrics.IoU(), t, prob)
        assert j == pytest.approx(d / (2 - d), abs=1e-6)
        assert d == pytest.approx(2 * j / (1 + j), abs=1e-6)


def test_sample_weight_matches_sklearn():
    rng = np.random.default_rng(11)
    t, prob = random_batch(rng, batch=3, size=10)
    w = rng.uniform(0, 2, size=t.shape[:3]).astype("float32")  # (B, H, W) per pixel
    pred = prob >= 0.5
    want = sk_dice(t, pred, sample_weight=w.ravel())
    assert keras_result(metrics.Dice(), t, prob, sample_weight=w) == pytest.approx(want, abs=1e-5)
    w_img = np.array([1.0, 0.0, 2.0], "float32")  # per image
    want = sk_iou(t, pred, sample_weight=np.repeat(w_img, 100))
    assert keras_result(metrics.IoU(), t, prob, sample_weight=w_img) == pytest.approx(want, abs=1e-5)


def test_shapes_with_and_without_channel_axis_agree():
    rng = np.random.default_rng(5)
    t, prob = random_batch(rng)
    a = keras_result(metrics.Dice(), t, prob)
    b = keras_result(metrics.Dice(), t[..., 0], prob)
    assert a == pytest.approx(b)


def test_dice_np_hand_worked():
    t = np.array([[1, 1, 0, 0], [1, 0, 0, 0]])
    p = np.array([[1, 0, 1, 0], [1, 0, 0, 0]], bool)
    assert metrics.dice_np(t, p) == pytest.approx(4 / 6)


def test_config_round_trip_and_registration():
    m = metrics.Dice(threshold=0.3, name="dice_03", empty_value=0.0)
    cfg = keras.saving.serialize_keras_object(m)
    assert cfg["registered_name"] == "unet_course>Dice"
    back = keras.saving.deserialize_keras_object(cfg)
    assert isinstance(back, metrics.Dice)
    assert (back.threshold, back.name, back.empty_value) == (0.3, "dice_03", 0.0)
    iou = metrics.IoU.from_config(metrics.IoU(0.7).get_config())
    assert iou.threshold == 0.7 and iou.name == "iou"


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="threshold"):
        metrics.Dice(threshold=1.5)
    with pytest.raises(TypeError, match="threshold"):
        metrics.IoU(threshold="0.5")
    with pytest.raises(ValueError, match="shape"):
        metrics.dice_np(np.zeros((2, 2)), np.zeros((2, 3)))


# ---- a model compiled with the metrics and losses, saved and reloaded; other backends ----

BACKEND_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    from unet_course import losses, metrics

    out = {"backend": keras.backend.backend()}
    rng = np.random.default_rng(0)
    t = (rng.random((4, 16, 16, 1)) < 0.3).astype("float32")
    p = np.clip(0.6 * t + 0.5 * rng.random(t.shape), 0, 1).astype("float32")
    dice, iou = metrics.Dice(), metrics.IoU(0.4)
    for i in range(0, 4, 2):
        dice.update_state(t[i:i + 2], p[i:i + 2])
        iou.update_state(t[i:i + 2], p[i:i + 2])
    out["dice"] = float(dice.result())
    out["iou"] = float(iou.result())
    out["bce_dice"] = float(losses.BCEDiceLoss()(t, p))
    out["soft_dice"] = float(losses.SoftDiceLoss()(t, p))
    w = rng.uniform(0, 3, (4, 16, 16)).astype("float32")
    out["weighted_bce"] = float(losses.WeightedBCELoss()(t, p, sample_weight=w))
    out["bce16"] = float(losses.BCEDiceLoss()(t, (1 - t).astype("float16")))

    # train a tiny model briefly, save it, reload it in safe mode with no custom_objects
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 1))
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile("adam", loss=losses.BCEDiceLoss(bce_weight=0.5),
                  metrics=[metrics.Dice(0.4), metrics.IoU()])
    model.fit(p, t, epochs=2, batch_size=2, verbose=0)
    path = sys.argv[1]
    model.save(path)
    back = keras.saving.load_model(path)  # safe_mode=True is the default
    out["same_predictions"] = bool(np.allclose(model.predict(p, verbose=0),
                                               back.predict(p, verbose=0)))
    out["loss_type"] = type(back.loss).__name__
    out["loss_bce_weight"] = back.loss.bce_weight
    out["evaluate_before"] = model.evaluate(p, t, verbose=0, return_dict=True)
    out["evaluate_after"] = back.evaluate(p, t, verbose=0, return_dict=True)
    print("RESULT " + json.dumps(out))
    """
)


def run_backend_script(backend, tmp_path):
    script = tmp_path / "script.py"
    script.write_text(BACKEND_SCRIPT)
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2",
               JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "model.keras")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def expected_backend_values():
    rng = np.random.default_rng(0)
    t = (rng.random((4, 16, 16, 1)) < 0.3).astype("float32")
    p = np.clip(0.6 * t + 0.5 * rng.random(t.shape), 0, 1).astype("float32")
    w = rng.uniform(0, 3, (4, 16, 16)).astype("float32")
    pc = np.clip(p, 1e-7, 1 - 1e-7).astype("float64")
    bce_px = -(t * np.log(pc) + (1 - t) * np.log(1 - pc))
    inter = (p * t).sum(axis=(1, 2, 3))
    sd = 1 - (2 * inter + 1) / (p.sum(axis=(1, 2, 3)) + t.sum(axis=(1, 2, 3)) + 1)
    return {
        "dice": sk_dice(t, p >= 0.5), "iou": sk_iou(t, p >= 0.4),
        "soft_dice": sd.mean(), "bce_dice": bce_px.mean() + sd.mean(),
        "weighted_bce": (bce_px[..., 0] * w).mean(),
    }


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_backend_values_and_keras_file_round_trip(backend, tmp_path):
    got = run_backend_script(backend, tmp_path)
    assert got["backend"] == backend
    want = expected_backend_values()
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    # every pixel confidently wrong in float16: -log(1e-7) + soft Dice ~ 1, finite
    assert 16.0 < got["bce16"] < 18.0
    assert got["same_predictions"]
    assert got["loss_type"] == "BCEDiceLoss" and got["loss_bce_weight"] == 0.5
    before, after = got["evaluate_before"], got["evaluate_after"]
    assert set(before) >= {"loss", "dice", "iou"}
    for key in ("loss", "dice", "iou"):
        assert after[key] == pytest.approx(before[key], abs=1e-5), key


def test_keras_file_needs_only_the_import(tmp_path):
    """In this process too: the saved config names our registered classes."""
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    model.compile("adam", loss=losses.SoftDiceLoss(smooth=2.0), metrics=[metrics.Dice()])
    model.fit(np.zeros((2, 8, 8, 1)), np.zeros((2, 8, 8, 1)), verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    back = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(back.loss, losses.SoftDiceLoss) and back.loss.smooth == 2.0
