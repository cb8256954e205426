"""What the subcommands share: the usage error and the parser that reports it in one line,
argument types, the checks of ``--data`` and ``--out``, and starting Keras."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from unet_course.rescale import FACTORS


class UsageError(Exception):
    """A mistake in the user's arguments or files: reported in one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with a pointer to ``--help``), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _number(cast, accept, expected: str):
    """An argparse type: ``cast`` the text, then ``accept(value)`` or say what was expected."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
seed_type = _number(int, lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)")
probability = _number(float, lambda v: 0 < v < 1, "a number in (0, 1)")
share = _number(float, lambda v: 0 <= v < 1, "a number in [0, 1)")
learning_rate = probability  # Adam step sizes worth trying lie well inside (0, 1)
_factor = _number(float, lambda v: FACTORS[0] <= v <= FACTORS[1],
                  f"'auto' or a number from {FACTORS[0]:g} to {FACTORS[1]:g}")


def scale_factor(text: str) -> float | str:
    """``--scale`` of predict and evaluate: ``"auto"`` or a factor in ``rescale.FACTORS``."""
    return text if text == "auto" else _factor(text)


def on_off_auto(text: str) -> bool | str:
    """``--xla``: "auto", or True / False for "on" / "off"."""
    choices = {"auto": "auto", "on": True, "off": False}
    if text not in choices:
        raise argparse.ArgumentTypeError(f"expected one of auto, on, off, got {text!r}")
    return choices[text]


def check_data(data: str) -> None:
    """``synthetic`` or an existing folder (in the DSB2018 layout); raises UsageError."""
    if data == "synthetic":
        return
    if not data.strip():
        raise UsageError("--data is empty; expected 'synthetic' or a DSB2018 folder")
    path = Path(data)
    if not path.exists():
        raise UsageError(
            f"--data {data!r}: no such folder; expected 'synthetic' or a DSB2018 folder "
            "(ROOT/<id>/images/<id>.png and ROOT/<id>/masks/*.png)"
        )
    if not path.is_dir():
        raise UsageError(f"--data {data!r} is a file; expected 'synthetic' or a DSB2018 folder")


def check_out_dir(out: Path, overwrite: bool, data: str = "synthetic") -> None:
    """Refuse (``UsageError``, ``PermissionError``) an ``out`` inside the ``data`` folder,
    not writable, a file, or a folder that is not empty (without ``overwrite``) or holds
    anything but a training run's files."""
    from unet_course import files

    if data != "synthetic" and files.inside(out, data):
        raise UsageError(f"--out {str(out)!r} lies inside --data {data!r}: the dataset would "
                         "no longer load; choose a folder outside it")
    files.check_writable(out, "--out")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file; expected a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UsageError(
            f"--out {str(out)!r} exists and is not empty; choose another folder or pass --overwrite"
        )
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if not _run_file(p.name))
        if foreign:
            raise UsageError(f"--out {str(out)!r} holds {foreign[0]!r}, which no training run "
                             f"wrote: --overwrite replaces only a run folder ({', '.join(RUN_FILES)});"
                             " choose another folder")


RUN_FILES = ("model.keras", "history.csv", "metrics.json")  # what train writes into --out


def _run_file(name: str) -> bool:
    """A file ``train`` writes, or the hidden temporary file of one (``files.atomic_path``)."""
    return name in RUN_FILES or any(name.startswith(f".{run}.") for run in RUN_FILES)


_BACKENDS = ("tensorflow", "jax", "torch", "numpy", "openvino")  # each its own package


def start_keras() -> None:
    """Refuse a ``KERAS_BACKEND`` that is not an installed backend (``UsageError``), then
    import Keras without TensorFlow's start-up lines (``runtime.quiet_startup``)."""
    import importlib.util

    from unet_course.runtime import quiet_startup

    backend = os.environ.get("KERAS_BACKEND")
    if backend is not None:
        if backend not in _BACKENDS:
            raise UsageError(f"KERAS_BACKEND={backend!r}: expected one of {', '.join(_BACKENDS)}")
        if importlib.util.find_spec(backend) is None:
            raise UsageError(f"KERAS_BACKEND={backend!r} but {backend} is not installed: "
                             "install it, or unset KERAS_BACKEND")
    quiet_startup()
