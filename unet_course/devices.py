"""Data parallel training on the devices of one machine, through Keras' own engines: build,
compile and fit inside ``distributed(devices)`` (JAX: ``keras.distribution.DataParallel``;
TensorFlow: ``tf.distribute.MirroredStrategy``); each step splits one ``global_batch``. The
learning rate is kept by default (``LR_RULE``: Adam's step does not grow with the batch).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # Keras is imported when used: the command line checks its arguments first
    import keras

LR_RULE = "none"
_RULES = ("none", "linear")


@dataclasses.dataclass(frozen=True)
class Plan:
    """The devices a run uses, named as ``"gpu:0"`` or ``"cpu:1"``, and how many."""

    devices: tuple[str, ...]
    count: int


def available(backend: str | None = None) -> list[str]:
    """The devices ``--devices all`` uses: the accelerators, else the CPU devices the backend
    shows (``keras.distribution.list_devices()``; TensorFlow's logical devices). On PyTorch,
    which Keras does not distribute: the CUDA devices, else ``["cpu:0"]``."""
    import keras

    backend = backend or keras.backend.backend()
    if backend not in ("jax", "tensorflow", "torch"):  # numpy, openvino: no training, one CPU
        return ["cpu:0"]
    if backend == "torch":
        from unet_course.runtime import gpu_devices

        return gpu_devices() or ["cpu:0"]
    return list(keras.distribution.list_devices())


def parse_devices(text: str) -> str | int:
    """``--devices``: ``"all"`` or a positive integer (as an int); ValueError otherwise."""
    value = str(text).strip().lower()
    if value == "all":
        return "all"
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise ValueError(f"--devices expects 'all' or a positive integer, got {text!r}")


def plan(devices: str | int | Sequence[str] = 1) -> Plan:
    """``"all"`` of ``available()``, its first ``N``, or the device names given. Raises
    ValueError when ``N`` exceeds the devices available, or for no device."""
    if isinstance(devices, str):
        devices = parse_devices(devices)
    found = available() if isinstance(devices, (str, int)) else list(devices)
    if isinstance(devices, int):
        if devices > len(found):
            raise ValueError(f"--devices {devices}: this machine shows {len(found)} device(s) "
                             f"({', '.join(found)}); use 'all' or a smaller number")
        found = found[:devices]
    if not found:
        raise ValueError("no devices to train on")
    return Plan(tuple(found), len(found))


@contextlib.contextmanager
def distributed(devices: str | int | Sequence[str] = 1) -> Iterator[Plan]:
    """Yield the ``Plan``; a model built, compiled and fit inside trains data parallel (on
    JAX each batch must divide by the device count). Raises ValueError as ``plan`` does, and
    for several devices on PyTorch."""
    import keras

    chosen = plan(devices)
    backend = keras.backend.backend()
    if chosen.count == 1:
        yield chosen
    elif backend == "jax":
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=list(chosen.devices)))
        try:
            yield chosen
        finally:
            keras.distribution.set_distribution(previous)
    elif backend == "tensorflow":
        import tensorflow as tf

        names = ["/" + name.upper() for name in chosen.devices]  # "cpu:1" -> "/CPU:1"
        with tf.distribute.MirroredStrategy(names).scope():
            yield chosen
    else:
        raise ValueError(f"training on {chosen.count} devices needs KERAS_BACKEND=jax or "
                         f"tensorflow; Keras does not distribute training on {backend}")


def predict_on_batch(model: keras.Model, batch: np.ndarray):
    """``model.predict_on_batch(batch)``, the one-device result inside ``distributed()`` too:
    on JAX the batch is padded with copies of its last item to a multiple of the devices, and
    the outputs (also TensorFlow's, one copy per replica) are cut back to ``len(batch)``."""
    import keras

    n = len(batch)
    spread = keras.distribution.distribution() if keras.backend.backend() == "jax" else None
    if spread is not None and n % spread.device_mesh.devices.size:
        extra = -n % spread.device_mesh.devices.size
        batch = np.concatenate([batch, np.repeat(np.asarray(batch)[-1:], extra, axis=0)])
    return keras.tree.map_structure(lambda a: a[:n], model.predict_on_batch(batch))


def global_batch(per_device: int, count: int) -> int:
    """Crops per step over all devices: ``per_device * count``; ValueError below 1."""
    if per_device < 1 or count < 1:
        raise ValueError(f"per_device and count must be >= 1, got {per_device}, {count}")
    return per_device * count


def learning_rate(base: float, count: int, rule: str = LR_RULE) -> float:
    """The peak learning rate for a global batch ``count`` times the per-device one: ``base``
    for ``"none"``, ``base * count`` for ``"linear"`` (the recipe's warm-up ramps up to it).
    ValueError for another rule."""
    if rule not in _RULES:
        raise ValueError(f"learning-rate rule must be one of {_RULES}, got {rule!r}")
    return base * count if rule == "linear" else base
