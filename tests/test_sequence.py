"""``SegmentationSequence`` feeds ``fit`` the same batches with one worker and with two (on
TensorFlow, where Keras's own thread pool builds them, when Keras's epochs are whole passes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

# Each image's pixels hold its index, so a batch's first pixels name the images it holds. A
# layer that changes nothing records what the model is fed (run_eagerly: concrete arrays).
CHILD = textwrap.dedent(
    """
    import json, threading
    import keras, numpy as np
    from unet_course.sequence import SegmentationSequence

    class Record(keras.layers.Layer):
        def call(self, x):
            try:
                FED.append(np.asarray(x)[:, 0, 0, 0].astype(int).tolist())
            except Exception:  # the symbolic build traces the model: nothing to record
                pass
            return x

        def compute_output_shape(self, shape):
            return shape

    class Threads(SegmentationSequence):
        def _batch(self, epoch, index):
            BUILT.add(threading.current_thread().name)
            return super()._batch(epoch, index)

    result = {}
    for workers in (1, 2):
        for steps, batches in ((None, None), (3, None), (None, 4)):
            FED, BUILT = [], set()
            images = [np.full((8, 8, 1), i, np.uint8) for i in range(10)]
            masks = [np.zeros((8, 8), np.int32)] * 10
            seq = Threads(images, masks, batch_size=2, size=8, seed=7, image_dtype="uint8",
                          workers=workers, max_queue_size=3, batches=batches,
                          augment_options={"brightness": 0, "contrast": 0})
            keras.utils.set_random_seed(0)
            inputs = keras.Input((8, 8, 1))
            x = Record()(keras.layers.Rescaling(1.0)(inputs))
            model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(x))
            model.compile("sgd", "binary_crossentropy", run_eagerly=True)
            model.fit(seq, epochs=4, steps_per_epoch=steps, verbose=0)
            result[f"{workers} {steps} {batches}"] = {
                "fed": FED, "threads": sum(n.startswith("batches") for n in BUILT)}
    print(json.dumps({"backend": keras.backend.backend(), "result": result}))
    """
)


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_fit_is_fed_the_same_batches_with_one_and_two_workers(backend):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend
    runs = report["result"]
    # TensorFlow: Keras's own pool, the same batches when its epochs are whole passes
    for case in ("None None", "None 4") if backend == "tensorflow" else ("None None", "3 None",
                                                                         "None 4"):
        one, two = runs[f"1 {case}"], runs[f"2 {case}"]
        assert one["threads"] == 0 and (two["threads"] > 0) == (backend != "tensorflow")
        assert one["fed"] == two["fed"], case
    whole = runs["1 None None"]["fed"]  # whole passes: each image once per pass
    for p in range(4):
        assert sorted(i for batch in whole[5 * p:5 * p + 5] for i in batch) == list(range(10))
    cut = runs["1 3 None"]["fed"]  # steps_per_epoch=3: passes of 5 batches across epochs
    assert sorted(i for batch in cut[:5] for i in batch) == list(range(10))
