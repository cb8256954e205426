"""``unet-course train``: check the arguments, then ``recipe.run`` into a staged folder; the
flags fill a ``recipe.Recipe``, their choices come from the package's own tables."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

from unet_course import interrupts
from unet_course.commands import common
from unet_course.commands.common import UsageError, add_command, add_options
from unet_course.model import UPSAMPLINGS, build_unet
from unet_course.train import PRECISIONS

MIN_IMG_SIZE = 32
_UNET_OPTIONS = ("base_filters", "depth", "dropout", "batch_norm", "upsampling", "activation")
_DEFAULTS = {o: inspect.signature(build_unet).parameters[o].default for o in _UNET_OPTIONS}


def add(subparsers) -> None:
    parser = add_command(
        subparsers, run, "train", "train a U-Net; write model.keras, history.csv and "
        "metrics.json", "Train a U-Net on synthetic nuclei or on your own folder of annotated "
        "slides (the DSB2018 layout: ROOT/<id>/images/<id>.png, ROOT/<id>/masks/*.png) into "
        "OUT/model.keras, OUT/history.csv and OUT/metrics.json (its scores and settings). "
        "--model recipe (the default) trains a fixed number of steps, on a folder half of the "
        "crops synthetic, keeps the best check on the validation slides and scores it beside a "
        "classical pipeline. A GPU gets mixed precision and XLA (see `unet-course doctor`).", {
        "--data": dict(default="synthetic", help="'synthetic' (default) or a DSB2018 folder"),
        "--out": dict(required=True, help="output folder (must be new or empty)"),
        "--overwrite": "replace the run in --out, once the new run is complete",
        "--img-size": "training crop side (default 128; 64 with --quick)",
        "--steps": "optimizer steps in all, whatever the slides (default 960; 8 with --quick)",
        "--synthetic-share": "on a folder: the share of synthetic training crops (default 0.5)",
        "--batch-size": "crops per step on each device (default 4)",
        "--lr": "Adam's peak learning rate, between warm-up and cosine decay (default 3e-3)",
        "--seed": dict(default=42, help="seeds the split, the weights and the batches "
                       "(default 42); evaluate finds it in metrics.json"),
        "--quick": "a few dozen small images and a few steps (also UNET_COURSE_QUICK=1)",
        "--precision": dict(choices=PRECISIONS, default="auto",
                            help="auto: mixed precision on a GPU, float32 on a CPU"),
        "--devices": "train data parallel on all (or N) devices; --batch-size is per device",
        "--xla": "XLA compilation (default auto: on where it is faster)",
    })
    group = parser.add_argument_group("model", "--model recipe (default) is the course's "
                                      "three-class recipe; seed is the popular 1.9 M-parameter "
                                      "U-Net; unet uses the build_unet options below")
    group.add_argument("--model", choices=("recipe", "seed", "unet"), default="recipe")
    group.set_defaults(**_DEFAULTS)
    unet = "--model unet: "
    add_options(group, {
        "--base-filters": f"{unet}filters of the first level, doubled a level down (default "
                          "%(default)s)",
        "--depth": f"{unet}pooling steps; --img-size a multiple of 2**depth (default %(default)s)",
        "--dropout": f"{unet}dropout rate in [0, 1) inside each block (default %(default)g)",
        "--batch-norm": f"{unet}batch normalisation after each convolution",
        "--upsampling": dict(choices=UPSAMPLINGS, help=f"{unet}a transposed convolution, or "
                             "bilinear then a 2x2 convolution (default %(default)s)"),
        "--activation": f"{unet}a Keras activation for the convolutions (default %(default)s)",
    })


def _train_settings(args: argparse.Namespace) -> dict:
    """Check the train arguments and fill the quick-mode defaults; no heavy work, no files."""
    from unet_course.runtime import quick_mode

    quick = args.quick or quick_mode()
    common.check_data(args.data)
    common.check_out_dir(args.out, args.overwrite, args.data)
    if args.model != "unet":
        given = [o for o in _UNET_OPTIONS if getattr(args, o) != _DEFAULTS[o]]
        if given:
            flags = ", ".join("--" + o.replace("_", "-") for o in given)
            raise UsageError(f"{flags}: options of --model unet only (the {args.model} model "
                             "is fixed)")
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
    from unet_course import files

    settings = _train_settings(args)
    had_run = args.out.is_dir() and any(args.out.iterdir())
    interrupts.check()
    common.start_keras()
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


def _log_and_check(line: str) -> None:
    """``recipe.run``'s log: print the line (a stage begins), then honour a recorded Ctrl-C."""
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
    given = dict(batch_size=args.batch_size, steps=args.steps, learning_rate=args.lr,
                 synthetic_share=args.synthetic_share)
    options.update({k: v for k, v in given.items() if v is not None})
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
    """Refuse a training step that would not fit this machine's memory: the crops' tensors,
    and the weights with their gradients and Adam's two moments (UsageError)."""
    crops = chosen.batch_size * chosen.img_size**2 * BYTES_PER_PIXEL * chosen.base_filters / 16
    weights = 16 * 36 * chosen.base_filters**2 * sum(4**level for level in range(chosen.depth + 1))
    total = common.physical_memory()
    if total and crops + weights > 0.8 * total:
        raise UsageError(f"--batch-size {chosen.batch_size} of {chosen.img_size}x"
                         f"{chosen.img_size} crops with --depth {chosen.depth} and "
                         f"--base-filters {chosen.base_filters} needs about "
                         f"{(crops + weights) / 2**30:,.0f} GiB for one training step; this "
                         f"machine has {total / 2**30:.0f} GiB: use smaller values")


def _run_train_recipe(args: argparse.Namespace, settings: dict, chosen, out: Path) -> None:
    """Train the recipe ``chosen`` (``recipe.run``) into the folder ``out``; print its scores
    beside the classical pipeline's, with a warning (stderr) when the U-Net does not win."""
    from unet_course import recipe

    report = recipe.run(args.data, chosen, out, quick=settings["quick"], precision=args.precision,
                        xla=args.xla, log=_log_and_check, devices=args.devices)
    print(json.dumps({k: report[k] for k in ("val_dice", "val_iou", "val_dsb_map", "best_step",
                                             "scale", "val_dsb_map_native")}))
    unet, classical = report["val_dsb_map"], report["val_classical"]
    tuned = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                      for k, v in classical["settings"].items())
    print(f"validation instance score on {report['val_images']} slides: U-Net {unet:.3f}, "
          f"classical pipeline {classical['dsb_map']:.3f} (tuned on the same slides: {tuned})")
    if unet <= classical["dsb_map"]:
        print("warning: the U-Net does not beat the classical pipeline here. Try more training "
              "(--steps), check that the masks match their images (one PNG per nucleus), and "
              "check the polarity: are your nuclei bright on dark or dark on bright?",
              file=sys.stderr)
    if report["scale"] == "auto":
        print(f"predict and evaluate will size-normalise each image (--scale auto): validation "
              f"instance score {unet:.3f}, against {report['val_dsb_map_native']:.3f} at the "
              "images' own size (--scale 1)")
