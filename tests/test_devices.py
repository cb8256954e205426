"""``unet_course.devices``: data parallel training on two virtual CPU devices, checked against
the same training on one device with the same global batch.

The two-device runs happen in a subprocess, because the devices must be set up before the
backend starts: JAX splits the host with ``XLA_FLAGS=--xla_force_host_platform_device_count=2``,
TensorFlow with ``tf.config.set_logical_device_configuration`` before anything else touches it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from unet_course import devices

# Two devices sum the same gradients in another order: float32 round-off, nothing more.
LOSS_TOLERANCE = 1e-5

SCRIPT = r"""
import json, os, sys
if os.environ["KERAS_BACKEND"] == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import numpy as np
from unet_course import devices
from unet_course.losses import ClassesDiceLoss

rng = np.random.default_rng(0)
x = rng.random((8, 16, 16, 3), dtype=np.float32)
y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, (8, 16, 16))]


class Batches(keras.utils.PyDataset):  # the recipe feeds fit a PyDataset: one global batch
    def __len__(self):
        return 1

    def __getitem__(self, i):
        return x, y


def train(count):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1, activation="softmax")(features))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=ClassesDiceLoss())
    history = model.fit(Batches(), epochs=6, verbose=0)  # one step per epoch
    return model, history.history["loss"]


result = {"available": devices.available()}
with devices.distributed(1) as plan:
    result["one"] = train(plan.count)[1]
with devices.distributed("all") as plan:
    result["plan"] = [list(plan.devices), plan.count]
    result["global_batch"] = devices.global_batch(len(x) // plan.count, plan.count)
    model, result["two"] = train(plan.count)
    # a single slide and an odd batch: the one-device result inside the distribution too
    result["odd"] = [devices.predict_on_batch(model, x[:k]).tolist() for k in (1, 3)]
    model.save(sys.argv[1])
if keras.backend.backend() == "jax":
    result["restored"] = keras.distribution.distribution() is None
reloaded = keras.models.load_model(sys.argv[1])  # built outside any distribution: one device
result["reloaded"] = reloaded.predict_on_batch(x[:3]).tolist()
print("RESULT " + json.dumps(result))
"""


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_two_devices_train_as_one_device_with_the_same_global_batch(backend, tmp_path):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "model.keras")],
                          capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result["available"] == ["cpu:0", "cpu:1"]
    assert result["plan"] == [["cpu:0", "cpu:1"], 2] and result["global_batch"] == 8
    one, two = np.array(result["one"]), np.array(result["two"])
    assert one[-1] < one[0] - 0.01  # the curve moves, so matching it means something
    np.testing.assert_allclose(two, one, rtol=0, atol=LOSS_TOLERANCE)
    reloaded = np.array(result["reloaded"])
    assert reloaded.shape == (3, 16, 16, 3)
    np.testing.assert_allclose(np.array(result["odd"][1]), reloaded, atol=1e-6)
    np.testing.assert_allclose(np.array(result["odd"][0]), reloaded[:1], atol=1e-6)
    if backend == "jax":
        assert result["restored"]


def test_one_device_sets_no_distribution():
    x = np.random.default_rng(1).random((3, 8, 8, 1), dtype=np.float32)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3)])
    with devices.distributed(1) as plan:
        assert plan == devices.Plan(tuple(devices.available()[:1]), 1)
        assert keras.distribution.distribution() is None
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            assert not tf.distribute.has_strategy()
        np.testing.assert_array_equal(devices.predict_on_batch(model, x),
                                      model.predict_on_batch(x))


@pytest.mark.parametrize("text, value", [("all", "all"), (" ALL ", "all"), ("1", 1), ("8", 8)])
def test_parse_devices_reads_all_or_a_count(text, value):
    assert devices.parse_devices(text) == value


@pytest.mark.parametrize("text", ["0", "-1", "1.5", "two", ""])
def test_parse_devices_says_what_it_expects(text):
    with pytest.raises(ValueError, match="'all' or a positive integer"):
        devices.parse_devices(text)


def test_more_devices_than_the_machine_shows_is_refused():
    count = len(devices.available())
    with pytest.raises(ValueError, match=f"shows {count} device"):
        devices.plan(count + 1)


def test_pytorch_refuses_several_devices(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(ValueError, match="KERAS_BACKEND=jax or tensorflow"):
        with devices.distributed(["cpu:0", "cpu:1"]):
            pass


def test_global_batch_and_learning_rate():
    assert devices.global_batch(4, 2) == 8
    assert devices.learning_rate(3e-3, 4) == 3e-3  # the default rule: none
    assert devices.learning_rate(3e-3, 4, "linear") == pytest.approx(1.2e-2)
    with pytest.raises(ValueError):
        devices.global_batch(0, 2)
    with pytest.raises(ValueError, match="rule"):
        devices.learning_rate(3e-3, 2, "sqrt")


def test_doctor_lists_the_devices_all_would_use():
    from unet_course.commands.doctor import doctor_report

    text = "\n".join(doctor_report())
    assert f"--devices all would use: {', '.join(devices.available())}" in text


def test_train_devices_all_quick_runs_on_this_machine_and_records_its_devices(tmp_path, capsys):
    from unet_course import cli

    out = tmp_path / "run"
    assert cli.main(["train", "--quick", "--devices", "all", "--out", str(out)]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["devices"] == devices.available()
    assert record["global_batch"] == record["recipe"]["batch_size"] * len(record["devices"])


def test_train_refuses_more_devices_than_there_are(tmp_path, capsys):
    from unet_course import cli

    count = len(devices.available())
    assert cli.main(["train", "--quick", "--devices", str(count + 1),
                     "--out", str(tmp_path / "a")]) == 2
    assert f"shows {count} device" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
