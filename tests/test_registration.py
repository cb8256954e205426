"""``import unet_course`` registers the course's Keras objects, whichever is imported first."""

import subprocess
import sys

import pytest

SAVE = """
import numpy as np, keras
from unet_course import losses, metrics, recipe
model = recipe.build_model(recipe.quick_recipe())
model.compile(loss=losses.ClassesDiceLoss(), metrics=[metrics.Dice()])
model.save({path!r})
print(float(np.asarray(model.predict_on_batch(np.full((1, 32, 32, 3), 7.0, np.float32))).sum()))
"""
LOAD = """
{imports}
import numpy as np
model = keras.saving.load_model({path!r})
print(float(np.asarray(model.predict_on_batch(np.full((1, 32, 32, 3), 7.0, np.float32))).sum()))
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("reg") / "model.keras")
    done = _run(SAVE.format(path=path))
    assert done.returncode == 0, done.stderr[-2000:]
    return path, float(done.stdout.split()[-1])


@pytest.mark.parametrize("imports", ["import unet_course\nimport keras",
                                     "import keras\nimport unet_course"])
def test_a_saved_course_model_loads_after_import_unet_course(saved, imports):
    path, expected = saved
    done = _run(LOAD.format(imports=imports, path=path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split()[-1]) == pytest.approx(expected, rel=1e-5)


def test_without_the_package_keras_cannot_read_it(saved):
    done = _run(LOAD.format(imports="import keras", path=saved[0]))
    assert done.returncode != 0 and "PercentileNormalization" in done.stderr
