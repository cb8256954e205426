"""unet_course: the helper package that the U-Net course notebooks import.

Data (``data``, ``rendering``, ``dsb2018``, ``datasets``, ``real_slide``, ``augment``,
``sequence``, ``targets``, ``files``, ``label_maps``); training (``model``, ``geometry``,
``normalization``, ``losses``, ``metrics``, ``recipe``, ``train``, ``devices``,
``callbacks``); prediction (``predict``, ``rescale``, ``postprocess``, ``scoring``,
``evaluate``, ``baseline``, ``overlay``, ``receptive_field``); the command line (``cli``,
``commands``, ``interrupts``, ``runtime``); ``lessons`` (what only the notebooks use).

Importing the package does not import Keras, but registers the course's Keras classes as soon
as Keras is imported, so ``keras.saving.load_model`` reads a course model; it also sets
``TF_CPU_ALLOCATOR_USE_BFC`` unless set.
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
