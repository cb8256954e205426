"""The device policy of a training run: ``choose_accelerator`` (mixed precision and XLA on a
GPU, float32 on a CPU), ``dtype_policy`` (Keras's global dtype policy inside a ``with`` block)
and ``build_model`` (a builder called under the policy, with a float32 output). Keras is
imported only when used, so the command line can read ``PRECISIONS`` before it starts Keras.
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


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """How training runs here: the Keras backend, the GPUs it sees (none on a CPU), the dtype
    policy and whether ``compile`` asks for XLA."""

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
    """The dtype policy and XLA compilation for this machine. ``"auto"``: on a GPU, mixed
    precision (bfloat16 where the GPU computes it fast, else float16) and XLA; on a CPU,
    float32, with XLA only on JAX. ValueError for another precision or xla."""
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
    """Set Keras's global dtype policy inside the ``with`` block; restore the old one after."""
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
    """Call ``builder()`` under the accelerator's dtype policy, after
    ``keras.utils.set_random_seed(seed)`` when a seed is given. A model whose output is not
    float32 gets a float32 linear activation appended: under mixed precision the loss must see
    float32 probabilities. TypeError when ``builder`` returns no ``keras.Model``.
    """
    import keras

    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an integer, got {seed!r} ({type(seed).__name__})")
        if seed < 0:
            raise ValueError(f"seed must be at least 0, got {seed}")
        keras.utils.set_random_seed(seed)
    with dtype_policy(accelerator.precision):
        model = builder()
        if not isinstance(model, keras.Model):
            raise TypeError(f"builder must return a keras.Model, got {type(model).__name__}")
        if model.outputs and str(model.outputs[0].dtype) != "float32":
            output = keras.layers.Activation("linear", dtype="float32",
                                             name="float32_output")(model.outputs[0])
            model = keras.Model(model.inputs, output, name=model.name)
    return model
