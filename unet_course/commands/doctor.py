"""``unet-course doctor``: versions, the Keras backend, the devices, the training policy."""

from __future__ import annotations

import argparse

from unet_course.commands.common import start_keras


def add(subparsers) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="print versions, the Keras backend and the devices found",
        description="Print versions, the Keras backend, the devices found, the precision and "
        "XLA policy training would use, and what to do when no GPU is visible.",
    )
    parser.set_defaults(func=run)



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

    lines = [f"unet_course {__version__} · Python {platform.python_version()} · {platform.platform()}"]
    for name in ("keras", "numpy", "tensorflow", "jax", "jaxlib", "torch"):
        lines.append(f"  {name:<10} {_package_version(name)}")
    lines.append(f"Keras backend: {keras.backend.backend()} (set KERAS_BACKEND to change it)")
    gpus = gpu_devices()
    lines.append(f"GPUs: {', '.join(gpus) if gpus else 'none visible'}")
    lines.append(f"Training would run on: {choose_accelerator().describe()}")
    found = available()
    lines.append(f"--devices all would use: {', '.join(found)} ({len(found)})")
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
