"""unet_course: the helper package that the U-Net course notebooks import.

The parts, and the directions they import in (``../shared/ARCHITECTURE.md``):

- Data: ``data`` and ``rendering`` (synthetic nuclei), ``dsb2018`` and ``datasets`` (folders
  in the Data Science Bowl layout, splits), ``real_slide``, ``augment``, ``sequence``
  (batches), ``targets``, ``files`` (the one image reader, atomic writes), ``label_maps``.
- Train: ``model`` and ``geometry`` (the U-Net builders, the sizes they take), ``normalization``
  (the per-image percentile layer), ``losses``, ``metrics``, ``recipe`` (the one training run),
  ``train`` (device policy), ``callbacks``.
- Predict: ``predict`` (a model on whole images), ``rescale`` (size normalisation),
  ``postprocess`` (probabilities to nuclei), ``scoring``, ``evaluate``, ``baseline``,
  ``overlay``, ``receptive_field``.
- Face: ``cli`` and ``commands`` (``python -m unet_course train | evaluate | predict | doctor``),
  ``interrupts``, ``runtime``.
- Lessons: ``lessons`` (what only the notebooks use, with the exercises' checks).

Importing the package does not import Keras, so the command line checks its arguments first.
It registers the course's Keras layers, losses and metrics as soon as Keras is imported (now,
or later), so ``keras.saving.load_model("model.keras")`` reads a course model in any process
that imported ``unet_course``. It also asks TensorFlow to pool its CPU memory
(``TF_CPU_ALLOCATOR_USE_BFC``, unless set), which ``benchmarks/fit_speed.py`` measures.
"""

import importlib.abc as _abc
import importlib.machinery as _machinery
import os as _os
import sys as _sys

_os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # before TensorFlow starts

from unet_course.runtime import quick_mode  # noqa: E402

__version__ = "0.1.0"
__all__ = ["quick_mode", "__version__"]


def _register() -> None:
    """Import the modules whose classes are ``keras.saving`` registered."""
    from unet_course import losses, metrics, normalization  # noqa: F401


class _AfterKeras(_abc.MetaPathFinder, _abc.Loader):
    """Registers the course's objects right after ``import keras`` has run (once)."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        _sys.meta_path.remove(self)
        spec = _machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            self._loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _register()


if "keras" in _sys.modules:
    _register()
else:
    _sys.meta_path.insert(0, _AfterKeras())
