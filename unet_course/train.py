"""The device policy of a training run: precision and XLA for this machine, and a model built
under them.

- ``choose_accelerator`` / ``Accelerator``: on a GPU, mixed precision (``mixed_bfloat16`` where
  the GPU has fast bfloat16, ``mixed_float16`` otherwise) and XLA, switched on and reported;
  on a CPU the same code path without them.
- ``dtype_policy``: sets Keras's global dtype policy inside a ``with`` block, restoring it after.
- ``build_model``: a builder called under the policy, with a float32 output.

The training run itself is ``recipe.run``. Keras is imported only when used, so the command
line can read ``PRECISIONS`` before it starts Keras.
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


def _check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")


# --------------------------------------------------------------------------- device policy


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """How training runs on this machine.

    Attributes:
        backend: the Keras backend (``"tensorflow"``, ``"jax"``, ``"torch"``).
        gpus: names of the GPUs the backend sees (empty on CPU).
        precision: the dtype policy, ``"float32"``, ``"mixed_float16"`` or ``"mixed_bfloat16"``.
        jit_compile: whether ``compile`` asks for XLA compilation.
    """

    backend: str
    gpus: tuple[str, ...]
    precision: str
    jit_compile: bool

    def describe(self) -> str:
        """One line for a log: device, precision and XLA, and why."""
        device = f"GPU ({', '.join(self.gpus)})" if self.gpus else "CPU"
        xla = "XLA on" if self.jit_compile else "XLA off"
        if self.backend == "jax" and self.jit_compile:
            xla += " (JAX always compiles with XLA)"
        return f"{device} · backend {self.backend} · precision {self.precision} · {xla}"


def choose_accelerator(precision: str = "auto", xla: bool | str = "auto") -> Accelerator:
    """Decide the dtype policy and XLA compilation for this machine.

    ``"auto"`` means: on a GPU, mixed precision (bfloat16 where the GPU computes it fast,
    compute capability 8.0 or newer; float16 otherwise) and XLA; on a CPU, float32, with XLA
    only on JAX (whose every step is XLA-compiled anyway; TensorFlow on CPU runs faster without).
    Pass explicit values to override, e.g. ``choose_accelerator("float32", xla=False)``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if xla not in ("auto", True, False):
        raise ValueError(f"xla must be 'auto', True or False, got {xla!r}")
    import keras

    from unet_course.runtime import gpu_devices, gpu_has_fast_bfloat16

    backend = keras.backend.backend()
    gpus = tuple(gpu_devices())
    if precision == "auto":
        precision = "float32"
        if gpus:
            precision = "mixed_bfloat16" if gpu_has_fast_bfloat16() else "mixed_float16"
    if xla == "auto":
        xla = bool(gpus) or backend == "jax"
    if backend == "torch":
        xla = False  # Keras's torch backend has no XLA path
    return Accelerator(backend=backend, gpus=gpus, precision=precision, jit_compile=bool(xla))


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Set Keras's global dtype policy inside the ``with`` block; restore the old one after.

    Layers take the global policy when they are created, so build the model inside the block.
    """
    import keras

    if name not in PRECISIONS[1:]:
        raise ValueError(f"precision must be one of {PRECISIONS[1:]}, got {name!r}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_model(
    builder: Callable[[], keras.Model], accelerator: Accelerator, seed: int | None = None
) -> keras.Model:
    """Call ``builder()`` under the accelerator's dtype policy; make sure the output is float32.

    ``seed``: seed Python, NumPy and the backend first
    (``keras.utils.set_random_seed``), so the same seed builds the same initial weights and
    dropout streams whatever ran before.

    Under mixed precision the layers compute in float16/bfloat16 but the probabilities that
    the loss and the metrics see must be float32: a sigmoid in float16 rounds 0.9996 up to 1,
    where the loss is clipped and its gradient is lost. When the model's last layer does not
    compute in float32, it is rebuilt with a float32 dtype policy (same weights), so the head
    convolution and its sigmoid run in float32; the rest of the model stays in 16 bit.

    Returns:
        a ``keras.Model`` whose output dtype is ``float32``.
    """
    import keras

    if seed is not None:
        _check_int("seed", seed, low=0)
        keras.utils.set_random_seed(seed)
    with dtype_policy(accelerator.precision):
        model = builder()
        if not isinstance(model, keras.Model):
            raise TypeError(f"builder must return a keras.Model, got {type(model).__name__}")
        if model.outputs and str(model.outputs[0].dtype) != "float32":
            model = _float32_head(model)
    return model


def _float32_head(model: keras.Model) -> keras.Model:
    """A copy of ``model`` whose output layer computes in float32 (same weights).

    For a functional model the last layer is cloned with a float32 policy; for anything else
    (or if that does not give a float32 output) a float32 ``Activation("linear")`` is appended.
    """
    import keras

    head = model.layers[-1]

    def clone(layer):
        config = layer.get_config()
        if layer is head:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    try:
        copy = keras.models.clone_model(model, clone_function=clone)
        copy.set_weights(model.get_weights())
    except (ValueError, TypeError, NotImplementedError):
        copy = model
    if str(copy.outputs[0].dtype) == "float32":
        return copy
    output = keras.layers.Activation("linear", dtype="float32", name="float32_output")(
        model.outputs[0]
    )
    return keras.Model(model.inputs, output, name=model.name)
