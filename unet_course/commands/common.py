"""What the subcommands share: the one-line usage error, argument types, the options several
commands take, the checks of ``--data``, ``--model`` and ``--out``, and starting Keras."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from unet_course.devices import parse_devices
from unet_course.postprocess import METHODS
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
devices_type = _number(parse_devices, bool, "'all' or a positive integer")
scale_factor = _number(lambda text: text if text == "auto" else float(text),
                       lambda v: v == "auto" or FACTORS[0] <= v <= FACTORS[1],
                       f"'auto' or a number from {FACTORS[0]:g} to {FACTORS[1]:g}")
on_off_auto = _number({"auto": "auto", "on": True, "off": False}.get, lambda v: True,
                      "one of auto, on, off")
OPTIONS = {  # how each option of the commands is read (add_options)
    **dict.fromkeys(("--model", "--input", "--output"), dict(required=True, type=Path)),
    **dict.fromkeys(("--overwrite", "--resume", "--quick", "--batch-norm"),
                    dict(action="store_true")),
    **dict.fromkeys(("--img-size", "--steps", "--batch-size", "--base-filters", "--depth",
                     "--tile"), dict(type=positive_int)),
    **dict.fromkeys(("--min-size", "--overlap", "--channel"), dict(type=nonnegative_int)),
    **dict.fromkeys(("--synthetic-share", "--dropout"), dict(type=share)),
    "--out": dict(type=Path),
    "--seed": dict(type=seed_type),
    "--threshold": dict(type=probability),
    "--lr": dict(type=learning_rate),
    "--scale": dict(type=scale_factor),
    "--devices": dict(type=devices_type, default=1, metavar="{all,N}"),
    "--xla": dict(type=on_off_auto, default="auto", metavar="{auto,on,off}"),
    "--instances": dict(choices=METHODS, default="watershed"),
}


def add_command(subparsers, run, name: str, about: str, description: str,
                options: dict[str, str | dict]) -> argparse.ArgumentParser:
    """The subcommand ``name`` (``about`` in the list of commands), which calls ``run(args)``,
    with ``options`` (``add_options``)."""
    parser = subparsers.add_parser(name, help=about, description=description)
    add_options(parser, options)
    parser.set_defaults(func=run)
    return parser


def add_options(parser, options: dict[str, str | dict]) -> None:
    """Add each ``flag: help`` (or ``flag: add_argument's keywords``) to ``parser``, read as
    ``OPTIONS`` says where the keywords do not say otherwise."""
    for flag, given in options.items():
        given = {"help": given} if isinstance(given, str) else given
        parser.add_argument(flag, **{**OPTIONS.get(flag, {}), **given})


def check_data(data: str) -> None:
    """``synthetic`` or an existing folder (in the DSB2018 layout); raises UsageError."""
    if data == "synthetic":
        return
    if not data.strip():
        raise UsageError("--data is empty; expected 'synthetic' or a DSB2018 folder")
    path = Path(data)
    if not path.exists():
        raise UsageError(f"--data {data!r}: no such folder; expected 'synthetic' or a DSB2018 "
                         "folder (ROOT/<id>/images/<id>.png and ROOT/<id>/masks/*.png)")
    if not path.is_dir():
        raise UsageError(f"--data {data!r} is a file; expected 'synthetic' or a DSB2018 folder")
    if (path / "images").is_dir() and (path / "masks").is_dir():
        raise UsageError(f"--data {data!r} is one slide's folder (it holds images/ and "
                         f"masks/); give the folder of the slide folders: {str(path.parent)!r}")
    inner = [p for p in path.iterdir() if p.is_dir()]
    if len(inner) == 1 and any((p / "images").is_dir() for p in inner[0].iterdir() if p.is_dir()):
        raise UsageError(f"--data {data!r} holds one folder, whose folders are the slides: "
                         f"give --data {str(inner[0])!r}")


def check_model_path(model: Path) -> None:
    """Refuse a ``--model`` that is not a complete ``.keras`` file (``files.check_keras_file``);
    for a folder, suggest its ``model.keras``."""
    from unet_course import files

    if model.is_dir():
        inner = model / "model.keras"
        raise UsageError(f"--model {str(model)!r} is a folder; expected a .keras file"
                         + (f": did you mean --model {str(inner)!r}?" if inner.is_file() else ""))
    files.check_keras_file(model, "--model")


def run_record(model: Path) -> tuple[dict, str | None]:
    """The training record beside ``model`` (``files.read_run_record``; ``{}`` without a usable
    one), and why there is none to use (else None)."""
    from unet_course import files

    try:
        record = files.read_run_record(model)
    except ValueError as error:
        return {}, f"the training record was not used: {error}"
    if record is None:
        return {}, f"no training record ({files.RECORD}) beside {str(model)!r}"
    return record, None


def check_model(model, flag: str) -> None:
    """Refuse a model that does not map images to per-pixel probabilities of 1 to 3 classes."""
    shape_in, shape_out = model.input_shape, model.output_shape
    if not (isinstance(shape_in, tuple) and len(shape_in) == 4 and shape_in[-1] in (1, 3)):
        raise ValueError(f"{flag} takes inputs of shape {shape_in}; expected images of shape "
                         "(batch, H, W, 1 or 3)")
    if not (isinstance(shape_out, tuple) and len(shape_out) == 4 and shape_out[-1] in (1, 2, 3)):
        raise ValueError(f"{flag} gives outputs of shape {shape_out}; expected per-pixel class "
                         "maps (batch, H, W, 1 to 3 classes): it is not a segmentation network")
    head = getattr(getattr(model.layers[-1], "activation", None), "__name__", None)
    if head not in (None, "sigmoid", "softmax"):
        raise ValueError(f"{flag}: its last layer's activation is {head!r}, so its outputs are "
                         "not probabilities; expected sigmoid or softmax")


def lost_to_classical(record: dict) -> str | None:
    """A warning when the record's ``val_dsb_map`` does not beat ``val_classical``, else None."""
    classical = (record.get("val_classical") or {}).get("dsb_map")
    unet = record.get("val_dsb_map")
    if not all(isinstance(v, int | float) for v in (classical, unet)) or unet > classical:
        return None
    return (f"warning: this model did not beat the classical pipeline on its validation slides "
            f"(instance score {unet:.3f} against {classical:.3f}, metrics.json): check its "
            "labels before you trust them, or train it longer (train --steps)")


def opens(path: Path) -> bool:
    """Whether ``path`` is an image file PIL opens and whose data pass ``verify``."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
    except Exception:  # noqa: BLE001 (missing, truncated, not an image: each its own error)
        return False
    return True


RUN_FILES = ("model.keras", "history.csv", "metrics.json")  # what train writes into --out


def check_out_dir(out: Path, overwrite: bool, data: str = "synthetic") -> None:
    """Refuse (``UsageError``, ``PermissionError``) an ``out`` inside the ``data`` folder,
    not writable, a file, or a folder that is not empty (without ``overwrite``) or holds
    anything but a training run's files."""
    from unet_course import files

    if files.inside(Path.cwd(), out):
        raise UsageError(f"--out {str(out)!r} is the folder you are working in: a run is "
                         "swapped into place as a whole folder; name a new one, e.g. "
                         "--out runs/mine")
    parent = out.absolute().parent
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {str(out)!r}: a run is written beside it first, and its "
                         f"folder {str(parent)!r} is not writable")
    if data != "synthetic" and files.inside(out, data):
        raise UsageError(f"--out {str(out)!r} lies inside --data {data!r}: the dataset would "
                         "no longer load; choose a folder outside it")
    files.check_writable(out, "--out")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file; expected a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"--out {str(out)!r} exists and is not empty; choose another folder "
                         "or pass --overwrite")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_FILES
                         and not p.name.startswith(tuple(f".{f}." for f in RUN_FILES)))
        if foreign:  # not a run's file, nor the hidden temporary one (files.atomic_path)
            raise UsageError(f"--out {str(out)!r} holds {foreign[0]!r}, which no training run "
                             "wrote: --overwrite replaces only a run folder "
                             f"({', '.join(RUN_FILES)}); choose another folder")


_BACKENDS = ("tensorflow", "jax", "torch", "numpy", "openvino")  # each its own package


def start_keras() -> None:
    """Refuse a ``KERAS_BACKEND`` that is not installed (``UsageError``), then import Keras
    quietly (``runtime.quiet_startup``)."""
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


def physical_memory() -> int | None:
    """The machine's memory in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
