"""``unet-course doctor``: versions, the Keras backend, the devices, the training policy."""

from __future__ import annotations

import argparse

from unet_course.commands.common import add_command, start_keras


def add(subparsers) -> None:
    add_command(subparsers, run, "doctor", "print versions, the Keras backend and the devices "
                "found", "Print versions, the Keras backend, the devices found, the precision "
                "and XLA policy training would use, and what to do when no GPU is visible.", {})


def _package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def doctor_report() -> list[str]:
    """The lines ``unet-course doctor`` prints: versions, backend, devices, policy, hints."""
    import platform

    import keras

    from unet_course import __version__
    from unet_course.devices import available
    from unet_course.runtime import gpu_devices
    from unet_course.train import choose_accelerator

    gpus, found = gpu_devices(), available()
    lines = [f"unet_course {__version__} · Python {platform.python_version()} · "
             f"{platform.platform()}"]
    lines += [f"  {name:<10} {_package_version(name)}"
              for name in ("keras", "numpy", "tensorflow", "jax", "jaxlib", "torch")]
    lines += [f"Keras backend: {keras.backend.backend()} (set KERAS_BACKEND to change it)",
              f"GPUs: {', '.join(gpus) if gpus else 'none visible'}",
              f"Training would run on: {choose_accelerator().describe()}",
              f"--devices all would use: {', '.join(found)} ({len(found)})"]
    if not gpus:
        lines += [
            "No GPU: everything works on the CPU, but training is slow there.",
            "  On Colab: Runtime > Change runtime type > GPU, then run again.",
            "  On your machine: check `nvidia-smi`, then install a GPU build of your backend",
            "  (e.g. `pip install 'tensorflow[and-cuda]'` or `pip install 'jax[cuda12]'`).",
            "  Meanwhile, `--quick` runs small versions of everything on a CPU.",
        ]
    return lines


def run(args: argparse.Namespace) -> int:
    from unet_course import interrupts

    start_keras()
    lines = doctor_report()
    interrupts.check()
    print("\n".join(lines))
    return 0
