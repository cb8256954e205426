"""The command line: ``python -m unet_course`` (or ``unet-course``) with one subcommand each.

What belongs here: argument parsing, checking a user's arguments before any work, and one
small function per subcommand that calls the package (``train``, ``evaluate``, ``doctor``).
The work itself lives in ``unet_course.train`` and ``unet_course.datasets``.

A user's mistake (a bad argument, a missing folder, an output folder that is not empty) gives
one line on stderr and exit code 2, never a traceback. Keras and TensorFlow are imported only
after the arguments have been checked, so a typo is reported in a fraction of a second.

Adding a subcommand: write ``_add_NAME(subparsers)`` that declares its arguments and sets
``func=_run_NAME``, write ``_run_NAME(args) -> int``, and list ``_add_NAME`` in ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

PROG = "unet-course"
EXIT_USAGE = 2


class UsageError(Exception):
    """A mistake in the user's arguments or files: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with a pointer to ``--help``), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


# --------------------------------------------------------------------------- argument types


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _nonnegative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def _learning_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def _on_off_auto(text: str) -> bool | str:
    choices = {"auto": "auto", "on": True, "off": False}
    if text not in choices:
        raise argparse.ArgumentTypeError(f"expected one of auto, on, off, got {text!r}")
    return choices[text]


def _check_data(data: str) -> None:
    """``synthetic`` or an existing folder (in the DSB2018 layout); raises UsageError."""
    if data == "synthetic":
        return
    path = Path(data)
    if not path.exists():
        raise UsageError(
            f"--data {data!r}: no such folder; expected 'synthetic' or a DSB2018 folder "
            "(ROOT/<id>/images/<id>.png and ROOT/<id>/masks/*.png)"
        )
    if not path.is_dir():
        raise UsageError(f"--data {data!r} is a file; expected 'synthetic' or a DSB2018 folder")


def _check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse an existing non-empty ``out`` unless ``overwrite``; refuse a file."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file; expected a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UsageError(
            f"--out {str(out)!r} exists and is not empty; choose another folder or pass --overwrite"
        )


# --------------------------------------------------------------------------- doctor


def _add_doctor(subparsers) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="print versions, the Keras backend and the devices found",
        description="Print versions, the Keras backend, the devices found, the precision and "
        "XLA policy training would use, and what to do when no GPU is visible.",
    )
    parser.set_defaults(func=_run_doctor)


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
    from unet_course.runtime import gpu_devices
    from unet_course.train import choose_accelerator

    lines = [f"unet_course {__version__} · Python {platform.python_version()} · {platform.platform()}"]
    for name in ("keras", "numpy", "tensorflow", "jax", "jaxlib", "torch"):
        lines.append(f"  {name:<10} {_package_version(name)}")
    lines.append(f"Keras backend: {keras.backend.backend()} (set KERAS_BACKEND to change it)")
    gpus = gpu_devices()
    lines.append(f"GPUs: {', '.join(gpus) if gpus else 'none visible'}")
    lines.append(f"Training would run on: {choose_accelerator().describe()}")
    if not gpus:
        lines += [
            "No GPU: everything works on the CPU, but training at 256x256 is slow there.",
            "  On Colab: Runtime > Change runtime type > GPU, then run again.",
            "  On your machine: check `nvidia-smi`, then install a GPU build of your backend",
            "  (e.g. `pip install 'tensorflow[and-cuda]'` or `pip install 'jax[cuda12]'`).",
            "  Meanwhile, `--quick` runs small versions of everything on a CPU.",
        ]
    return lines


def _run_doctor(args: argparse.Namespace) -> int:
    print("\n".join(doctor_report()))
    return 0
