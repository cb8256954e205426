"""``unet-course train``: check the arguments, then ``recipe.run`` into a staged folder.

Every model trains through the one run (``recipe.run``); the flags fill a ``recipe.Recipe``.
Choices come from the package's own tables (``train.PRECISIONS``, ``model.UPSAMPLINGS``,
``recipe.MODELS`` and ``build_unet``'s defaults), so a new option is added in one place.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

from unet_course.commands.common import (
    UsageError,
    check_data,
    check_out_dir,
    learning_rate,
    on_off_auto,
    physical_memory,
    positive_int,
    seed_type,
    share,
    start_keras,
)
from unet_course.model import UPSAMPLINGS, build_unet
from unet_course.train import PRECISIONS

MIN_IMG_SIZE = 32
_UNET_OPTIONS = ("base_filters", "depth", "dropout", "batch_norm", "upsampling", "activation")
_DEFAULTS = {o: inspect.signature(build_unet).parameters[o].default for o in _UNET_OPTIONS}


def add(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a U-Net; write model.keras, history.csv and metrics.json",
        description="Train a U-Net on synthetic nuclei or on your own folder of annotated "
        "slides (the DSB2018 layout: ROOT/<id>/images/<id>.png, ROOT/<id>/masks/*.png). "
        "Writes OUT/model.keras, OUT/history.csv and OUT/metrics.json (validation scores and "
        "every setting of the run). Every model trains the same way; the default is the "
        "course's recipe (--model recipe: three classes, interior-seeded watershed): a fixed "
        "number of steps (--steps) whatever the folder holds, half of the crops from synthetic slides when "
        "training on a folder, the validation slides scored every 120 steps and the best check "
        "kept. It ends with the U-Net's and a classical pipeline's validation scores side by "
        "side. On a GPU, mixed precision and XLA are switched on automatically (see "
        "`unet-course doctor`).",
    )
    parser.add_argument("--data", default="synthetic",
                        help="'synthetic' (default) or a folder in the DSB2018 layout")
    parser.add_argument("--out", required=True, type=Path, help="output folder (must be new or empty)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the training run in --out, once the new run is complete "
                        "(an interrupted or failed run leaves the old one as it was)")
    parser.add_argument("--img-size", type=positive_int, default=None,
                        help="training crop side (default 128; 64 with --quick)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="optimizer steps in all, whatever the number of slides "
                        "(default 960; 8 with --quick)")
    parser.add_argument("--synthetic-share", type=share, default=None,
                        help="on a folder: the share of the training crops cut from "
                        "synthetic slides (default 0.5; 0 = your slides alone)")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="crops per step on each device (default 4)")
    parser.add_argument("--lr", type=learning_rate, default=None,
                        help="Adam's peak learning rate, after a warm-up and before a cosine "
                        "decay (default 3e-3)")
    parser.add_argument("--seed", type=seed_type, default=42,
                        help="seeds the data split, the weights and the batches (default 42); "
                        "recorded in metrics.json, where evaluate finds the held-out split")
    parser.add_argument("--quick", action="store_true",
                        help="a few dozen small images and a few steps (also UNET_COURSE_QUICK=1)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: mixed precision on a GPU, float32 on a CPU")
    parser.add_argument("--devices", type=devices_type, default=1, metavar="{all,N}",
                        help="train data parallel on all (or N) of this machine's "
                        "devices (see `unet-course doctor`); --batch-size is per device "
                        "(default 1: one device)")
    parser.add_argument("--xla", type=on_off_auto, default="auto", metavar="{auto,on,off}",
                        help="XLA compilation (default auto: on where it is faster, see "
                        "`unet-course doctor`)")
    add_model_options(parser)
    parser.set_defaults(func=run)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model", "--model recipe (default) is the course's "
                                      "three-class recipe; seed is the popular 1.9 M-parameter "
                                      "U-Net; unet uses the build_unet options below")
    group.add_argument("--model", choices=("recipe", "seed", "unet"), default="recipe")
    unet = "--model unet: "
    group.add_argument("--base-filters", type=positive_int, default=_DEFAULTS["base_filters"],
                       help=f"{unet}filters of the first level, doubled at each level down "
                       f"(default {_DEFAULTS['base_filters']})")
    group.add_argument("--depth", type=positive_int, default=_DEFAULTS["depth"],
                       help=f"{unet}pooling steps; --img-size must be divisible by 2**depth "
                       f"(default {_DEFAULTS['depth']})")
    group.add_argument("--dropout", type=float, default=_DEFAULTS["dropout"],
                       help=f"{unet}dropout rate in [0, 1) between the two convolutions of "
                       f"each block (default {_DEFAULTS['dropout']:g})")
    group.add_argument("--batch-norm", action="store_true", default=_DEFAULTS["batch_norm"],
                       help=f"{unet}batch normalisation after each convolution")
    group.add_argument("--upsampling", choices=UPSAMPLINGS, default=_DEFAULTS["upsampling"],
                       help=f"{unet}how the decoder doubles the size: a transposed convolution, "
                       f"or bilinear up-sampling then a 2x2 convolution (default "
                       f"{_DEFAULTS['upsampling']})")
    group.add_argument("--activation", default=_DEFAULTS["activation"],
                       help=f"{unet}a Keras activation name for the convolutions (default "
                       f"{_DEFAULTS['activation']})")


def _train_settings(args: argparse.Namespace) -> dict:
    """Check the train arguments and fill the quick-mode defaults; no heavy work, no files."""
    from unet_course.runtime import quick_mode

    quick = args.quick or quick_mode()
    check_data(args.data)
    check_out_dir(args.out, args.overwrite, args.data)
    if args.model != "unet":
        given = [o for o in _UNET_OPTIONS if getattr(args, o) != _DEFAULTS[o]]
        if given:
            flags = ", ".join("--" + o.replace("_", "-") for o in given)
            raise UsageError(f"{flags}: options of --model unet only (the {args.model} model "
                             "is fixed)")
    if not 0 <= args.dropout < 1:
        raise UsageError(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.data == "synthetic" and args.synthetic_share is not None:
        raise UsageError("--synthetic-share mixes synthetic slides into a folder of your own "
                         "(--data FOLDER); with --data synthetic every crop is synthetic")
    img_size = args.img_size or (64 if quick else 128)
    if img_size < MIN_IMG_SIZE:
        raise UsageError(f"--img-size {img_size}: expected at least {MIN_IMG_SIZE} (the "
                         "smallest image the data sets and the U-Net's pooling take)")
    depth = args.depth if args.model == "unet" else 4
    if 2**depth > img_size:
        raise UsageError(f"--depth {depth}: each pooling halves the crop, and a {img_size}-pixel "
                         f"crop allows --depth {img_size.bit_length() - 1} at most (or raise "
                         "--img-size)")
    try:
        from unet_course.geometry import check_input_size

        check_input_size(img_size, depth, "same")
    except ValueError as err:
        raise UsageError(f"--img-size: {err}") from None
    return dict(quick=quick, img_size=img_size)


def run(args: argparse.Namespace) -> int:
    """Check the arguments, then train into a hidden sibling of ``--out`` that takes its
    place only when the run is complete (``files.staged_folder``)."""
    from unet_course import files, interrupts

    settings = _train_settings(args)
    had_run = args.out.is_dir() and any(args.out.iterdir())
    interrupts.check()
    start_keras()
    chosen = _recipe(args, settings)
    interrupts.check()
    try:
        with files.staged_folder(args.out) as work:
            interrupts.check()
            _run_train_recipe(args, settings, chosen, work)
            interrupts.check()  # the last moment a run can be given up
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"the new run was not finished and nothing of it was kept; {str(args.out)!r} is "
            + ("unchanged, with its previous run" if had_run else "not written")) from None
    print(f"Wrote {args.out / 'model.keras'}, history.csv and metrics.json")
    return 0


def devices_type(text: str) -> str | int:
    """``--devices``: ``all`` or a positive integer (``devices.parse_devices``)."""
    from unet_course.devices import parse_devices

    try:
        return parse_devices(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _log_and_check(line: str) -> None:
    """``recipe.run``'s log: print the line, then honour a recorded Ctrl-C (its stages are
    logged as they begin)."""
    from unet_course import interrupts

    print(line)
    interrupts.check()


def _recipe(args: argparse.Namespace, settings: dict):
    """The ``recipe.Recipe`` the flags ask for (checked before any work; UsageError)."""
    from unet_course import recipe

    options = {"img_size": settings["img_size"], "seed": args.seed, "model": args.model}
    if args.model != "recipe":
        options["targets"] = "binary"
    if args.model == "unet":
        options.update({o: getattr(args, o) for o in _UNET_OPTIONS})
    if args.batch_size:
        options["batch_size"] = args.batch_size
    if args.steps:
        options["steps"] = args.steps
    if args.synthetic_share is not None:
        options["synthetic_share"] = args.synthetic_share
    if args.lr:
        options["learning_rate"] = args.lr
    try:
        chosen = recipe.settings(quick=settings["quick"], **options)
    except ValueError as err:
        raise UsageError(str(err)) from None
    import keras

    if keras.backend.backend() not in ("tensorflow", "jax", "torch"):
        raise UsageError(f"KERAS_BACKEND={keras.backend.backend()} cannot train (no gradients); "
                         "use tensorflow, jax or torch")
    try:
        keras.activations.get(chosen.activation)
    except ValueError:
        raise UsageError(f"--activation {chosen.activation!r}: not a Keras activation (e.g. "
                         "relu, elu, gelu)") from None
    _check_memory(chosen)
    return chosen


BYTES_PER_PIXEL = 4096  # a training step's tensors per crop pixel, at 16 filters (rough)


def _check_memory(chosen) -> None:
    """Refuse a U-Net or a batch of crops whose training step would not fit this machine's
    memory: the tensors of the crops, and the weights with their gradients and Adam's two
    moments (two 3x3 convolutions a level, down and up)."""
    crops = chosen.batch_size * chosen.img_size**2 * BYTES_PER_PIXEL * chosen.base_filters / 16
    weights = 16 * 36 * sum((chosen.base_filters * 2**level)**2 for level in range(chosen.depth + 1))
    total = physical_memory()
    if total and crops + weights > 0.8 * total:
        raise UsageError(f"--batch-size {chosen.batch_size} of {chosen.img_size}x"
                         f"{chosen.img_size} crops with --depth {chosen.depth} and "
                         f"--base-filters {chosen.base_filters} needs about "
                         f"{(crops + weights) / 2**30:,.0f} GiB for one training step; this "
                         f"machine has {total / 2**30:.0f} GiB: use smaller values")


def _run_train_recipe(args: argparse.Namespace, settings: dict, chosen, out: Path) -> None:
    """Train the course's recipe ``chosen`` (``recipe.run``) into the folder ``out``; print
    the scores beside the classical pipeline's."""
    from unet_course import recipe

    report = recipe.run(args.data, chosen, out, quick=settings["quick"], precision=args.precision,
                        xla=args.xla, log=_log_and_check, devices=args.devices)
    print(json.dumps({k: report[k] for k in ("val_dice", "val_iou", "val_dsb_map", "best_step",
                                             "scale", "val_dsb_map_native")}))
    line, warning = baseline_line(report)
    print(line)
    if warning:
        print(warning, file=sys.stderr)
    if report["scale"] == "auto":
        print(f"predict and evaluate will size-normalise each image (--scale auto): validation "
              f"instance score {report['val_dsb_map']:.3f}, against "
              f"{report['val_dsb_map_native']:.3f} at the images' own size (--scale 1)")


def baseline_line(report: dict) -> tuple[str, str | None]:
    """The U-Net's and the classical pipeline's validation instance scores side by side, and
    a warning with what to try when the U-Net does not win (else None)."""
    unet, classical = report["val_dsb_map"], report["val_classical"]["dsb_map"]
    line = (f"validation instance score on {report['val_images']} slides: U-Net {unet:.3f}, "
            f"classical pipeline {classical:.3f} (tuned on the same slides: "
            f"{_settings_text(report['val_classical']['settings'])})")
    if unet > classical:
        return line, None
    return line, ("warning: the U-Net does not beat the classical pipeline here. Try more "
            "training (--steps), check that the masks match their images (one PNG per nucleus), "
            "and check the polarity: are your nuclei bright on dark or dark on bright?")


def _settings_text(settings: dict) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in settings.items())
