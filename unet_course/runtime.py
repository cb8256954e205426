"""Runtime facts for a notebook's Setup cell and the command line: quick mode, quiet start-up,
the GPUs of the Keras backend and whether they compute bfloat16 fast."""

from __future__ import annotations

import importlib.util
import os
import sys

QUICK_ENV = "UNET_COURSE_QUICK"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def quick_mode() -> bool:
    """Whether ``UNET_COURSE_QUICK`` is ``1/true/yes/on`` (any case) rather than unset or
    ``0/false/no/off``; ValueError for anything else."""
    value = os.environ.get(QUICK_ENV, "").strip().lower()
    if value not in _TRUE | _FALSE:
        raise ValueError(f"{QUICK_ENV}={os.environ[QUICK_ENV]!r} is not understood; expected "
                         f"one of {sorted(_TRUE | (_FALSE - {''}))}")
    return value in _TRUE


def quiet_startup() -> None:
    """Keep TensorFlow's start-up lines out of the output: set ``TF_CPP_MIN_LOG_LEVEL=3`` unless
    set and, unless Keras is imported, import it (and TensorFlow, which Keras's
    ``set_random_seed`` imports on every backend) and list the devices with file descriptor 2
    sent to ``/dev/null``."""
    import logging

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if "keras" in sys.modules:
        return
    try:
        saved = os.dup(2)
    except OSError:  # no stderr descriptor to silence (some embedded interpreters)
        import keras  # noqa: F401

        return
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        gpu_devices()  # imports Keras; the first device listing prints its own start-up lines
        if importlib.util.find_spec("tensorflow"):
            import tensorflow  # noqa: F401 (keras.utils.set_random_seed imports it on any backend)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def gpu_devices() -> list[str]:
    """The GPUs of the Keras backend, ``["gpu:0", ...]`` (``[]`` without one), from
    ``keras.distribution.list_devices`` (``torch.cuda`` on PyTorch)."""
    import keras

    if keras.backend.backend() == "torch":
        import torch

        return [f"gpu:{i}" for i in range(torch.cuda.device_count())]
    try:
        return list(keras.distribution.list_devices("gpu"))
    except (RuntimeError, ValueError, AttributeError):  # JAX without a GPU platform raises
        return []


def runtime_summary(trains: bool = True) -> str:
    """Keras version, backend, device and mode in one line, plus a hint to choose a GPU
    runtime when there is none and the notebook ``trains``."""
    import keras

    gpus = gpu_devices()
    mode = "quick" if quick_mode() else "full"
    device = f"GPU: {', '.join(gpus)}" if gpus else "no GPU (CPU only)"
    line = f"Keras {keras.__version__} · backend {keras.backend.backend()} · {device} · {mode} mode"
    if not gpus and trains:
        line += ("\nHint: training is much faster on a GPU. On Colab choose "
                 "Runtime > Change runtime type > GPU, then run the notebook again.")
    return line


def gpu_has_fast_bfloat16() -> bool:
    """True when the first GPU has compute capability 8.0 or newer; False without a GPU."""
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpu = tf.config.list_physical_devices("GPU")[0]
            major = tf.config.experimental.get_device_details(gpu)["compute_capability"][0]
        elif backend == "jax":
            import jax

            gpu = next(d for d in jax.devices() if d.platform == "gpu")
            major = int(str(gpu.compute_capability).split(".")[0])
        else:
            import torch

            major = torch.cuda.get_device_capability(0)[0]
    except Exception:  # an unknown GPU: float16 with loss scaling works everywhere
        return False
    return major >= 8
