"""Runtime facts: quick mode, the Keras backend, the devices in use (and whether the GPU computes
bfloat16 fast, for the precision policy of ``train.choose_accelerator``), and seeding.

Plumbing that every notebook needs in its Setup cell. Nothing here runs on import.
"""

from __future__ import annotations

import os
import sys

QUICK_ENV = "UNET_COURSE_QUICK"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def quick_mode() -> bool:
    """True when ``UNET_COURSE_QUICK`` asks for the small, fast version of every notebook.

    Quick mode shrinks data and epochs only; every check still runs. Accepted values are
    ``1/true/yes/on`` and ``0/false/no/off`` (any case); anything else is an error, so a typo
    never silently starts a long full-mode run.
    """
    value = os.environ.get(QUICK_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f"{QUICK_ENV}={os.environ[QUICK_ENV]!r} is not understood; expected one of "
        f"{sorted(_TRUE | (_FALSE - {''}))}"
    )


def quiet_startup() -> None:
    """Keep TensorFlow's C++ start-up lines (``E0000 ... cuInit``, ``cudart_stub``, ``absl``
    warnings) out of a notebook or a command's output. Call it before Keras is first imported.

    On a machine without a GPU those lines are printed by TensorFlow's C++ loggers, and learners
    read them as a failure; they are not. It sets ``TF_CPP_MIN_LOG_LEVEL=3`` unless the variable
    is already set and, because recent TensorFlow versions print some lines before they read
    that variable (on import, and again when the devices are first listed), imports Keras and
    lists the backend's devices once with the process's stderr file descriptor sent to
    ``/dev/null``. Errors raised in Python still propagate, and stderr is restored before they
    do. It also keeps TensorFlow's Python warnings (``tf.function retracing``: a speed hint for
    developers) out, leaving its errors. Does nothing more once Keras is imported.
    """
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
        import keras  # noqa: F401

        gpu_devices()  # the first device listing prints its own start-up lines
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def gpu_devices() -> list[str]:
    """The GPUs the active Keras backend can use, as ``"gpu:0"``, ... (an empty list on CPU).

    ``keras.distribution.list_devices("gpu")`` on TensorFlow and JAX; Keras has no
    distribution API for PyTorch, so there it asks ``torch.cuda``.
    """
    import keras

    if keras.backend.backend() == "torch":
        import torch

        return [f"gpu:{i}" for i in range(torch.cuda.device_count())]
    try:
        return list(keras.distribution.list_devices("gpu"))
    except (RuntimeError, ValueError, AttributeError):  # JAX without a GPU platform raises
        return []


def runtime_summary(trains: bool = True) -> str:
    """One line for a notebook's Setup cell: Keras version, backend, device, quick mode.

    When no GPU is visible and the notebook ``trains`` a network, it adds what to do about it
    (on Colab: Runtime > Change runtime type > GPU).
    """
    import keras

    gpus = gpu_devices()
    mode = "quick" if quick_mode() else "full"
    device = f"GPU: {', '.join(gpus)}" if gpus else "no GPU (CPU only)"
    line = f"Keras {keras.__version__} · backend {keras.backend.backend()} · {device} · {mode} mode"
    if not gpus and trains:
        line += (
            "\nHint: training is much faster on a GPU. On Colab choose "
            "Runtime > Change runtime type > GPU, then run the notebook again."
        )
    return line


def gpu_has_fast_bfloat16() -> bool:
    """True when the first GPU has compute capability 8.0 or newer (Ampere, Hopper, ...)."""
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
