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
from collections.abc import Sequence
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


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_seed = _number(int, lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)")
_probability = _number(float, lambda v: 0 < v < 1, "a number in (0, 1)")
_learning_rate = _probability  # Adam step sizes worth trying lie well inside (0, 1)


def _on_off_auto(text: str) -> bool | str:
    choices = {"auto": "auto", "on": True, "off": False}
    if text not in choices:
        raise argparse.ArgumentTypeError(f"expected one of auto, on, off, got {text!r}")
    return choices[text]


def _check_data(data: str) -> None:
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


def _check_out_dir(out: Path, overwrite: bool, data: str = "synthetic") -> None:
    """Refuse an existing non-empty ``out`` unless ``overwrite``; refuse a file, a folder
    that cannot be written, and a folder inside the ``--data`` folder."""
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


_BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "numpy",
             "openvino": "openvino"}


def _start_keras() -> None:
    """Check that ``KERAS_BACKEND`` names an installed backend, then load it without
    TensorFlow's C++ start-up lines. Call it after the arguments are checked."""
    import importlib.util

    from unet_course.runtime import quiet_startup

    backend = os.environ.get("KERAS_BACKEND")
    if backend is not None:
        if backend not in _BACKENDS:
            raise UsageError(f"KERAS_BACKEND={backend!r}: expected one of {', '.join(_BACKENDS)}")
        if importlib.util.find_spec(_BACKENDS[backend]) is None:
            raise UsageError(f"KERAS_BACKEND={backend!r} but {_BACKENDS[backend]} is not "
                             f"installed: install it, or unset KERAS_BACKEND")
    quiet_startup()


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
    _start_keras()
    print("\n".join(doctor_report()))
    return 0


# --------------------------------------------------------------------------- train


def _add_train(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a U-Net; write model.keras, history.csv and metrics.json",
        description="Train a U-Net on synthetic nuclei or a DSB2018 folder. Writes "
        "OUT/model.keras (the best epoch), OUT/history.csv and OUT/metrics.json (validation "
        "scores and every setting of the run). With no tuning flags it runs the course's "
        "default recipe (--model recipe: three classes, interior-seeded watershed; about 8 "
        "minutes on a 2-core CPU, see benchmarks/quality.py). On a GPU, mixed precision and "
        "XLA are switched on automatically (see `unet-course doctor`).",
    )
    parser.add_argument("--data", default="synthetic",
                        help="'synthetic' (default) or a folder in the DSB2018 layout")
    parser.add_argument("--out", required=True, type=Path, help="output folder (must be new or empty)")
    parser.add_argument("--overwrite", action="store_true", help="allow a non-empty --out")
    parser.add_argument("--img-size", type=_positive_int, default=None,
                        help="training crop side (recipe: 128; seed/unet: 256; 64 with --quick)")
    parser.add_argument("--epochs", type=_positive_int, default=None,
                        help="maximum epochs (recipe: 16; seed/unet: 40; fewer with --quick)")
    parser.add_argument("--batch-size", type=_positive_int, default=8)
    parser.add_argument("--steps-per-epoch", type=_positive_int, default=None,
                        help="seed/unet: batches per epoch (default: the whole training set; "
                        "2 with --quick)")
    parser.add_argument("--lr", type=_learning_rate, default=None,
                        help="Adam learning rate (recipe: 3e-3 peak of a cosine; seed/unet: 1e-3)")
    parser.add_argument("--loss", choices=("bce_dice", "bce", "dice"), default=None,
                        help="seed/unet only (default bce_dice)")
    parser.add_argument("--seed", type=_seed, default=42)
    parser.add_argument("--quick", action="store_true",
                        help="a few dozen small images and a few steps (also UNET_COURSE_QUICK=1)")
    parser.add_argument("--precision", choices=("auto", "float32", "mixed_float16", "mixed_bfloat16"),
                        default="auto", help="auto: mixed precision on a GPU, float32 on a CPU")
    parser.add_argument("--xla", type=_on_off_auto, default="auto",
                        help="auto (default), on or off: XLA compilation")
    parser.add_argument("--no-augment", action="store_true", help="seed/unet: no augmentation")
    parser.add_argument("--workers", type=_positive_int, default=1,
                        help="data loader worker threads")
    parser.add_argument("--weight-map", action="store_true",
                        help="seed/unet: the U-Net paper's trick for touching nuclei: cut their "
                        "borders out of the masks and weight the loss by eq. 2 (weighted BCE)")
    _add_model_options(parser)
    parser.set_defaults(func=_run_train)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model", "--model recipe (default) is the course's "
                                      "three-class recipe; seed is the popular 1.9 M-parameter "
                                      "U-Net; unet uses the build_unet options below")
    group.add_argument("--model", choices=("recipe", "seed", "unet"), default="recipe")
    group.add_argument("--base-filters", type=_positive_int, default=16)
    group.add_argument("--depth", type=_positive_int, default=4)
    group.add_argument("--dropout", type=float, default=0.0)
    group.add_argument("--batch-norm", action="store_true")
    group.add_argument("--upsampling", choices=("transpose", "bilinear"), default="transpose")
    group.add_argument("--activation", default="elu")


_UNET_OPTIONS = ("base_filters", "depth", "dropout", "batch_norm", "upsampling", "activation")


def _train_settings(args: argparse.Namespace) -> dict:
    """Check the train arguments and fill the quick-mode defaults; no heavy work, no files."""
    from unet_course.runtime import quick_mode

    quick = args.quick or quick_mode()
    _check_data(args.data)
    _check_out_dir(args.out, args.overwrite, args.data)
    recipe = args.model == "recipe"
    if args.model != "unet":
        given = [o for o in _UNET_OPTIONS if getattr(args, o) != _DEFAULTS[o]]
        if given:
            flags = ", ".join("--" + o.replace("_", "-") for o in given)
            raise UsageError(f"{flags}: options of --model unet only (the {args.model} model "
                             "is fixed)")
    if recipe:
        given = [flag for flag, on in (("--loss", args.loss is not None),
                                       ("--weight-map", args.weight_map),
                                       ("--no-augment", args.no_augment),
                                       ("--steps-per-epoch", args.steps_per_epoch is not None))
                 if on]
        if given:
            raise UsageError(f"{', '.join(given)}: options of --model seed or unet; the recipe "
                             "fixes its loss, targets and augmentation")
    depth = 4 if args.model != "unet" else args.depth
    if not 0 <= args.dropout < 1:
        raise UsageError(f"--dropout must be in [0, 1), got {args.dropout}")
    img_size = args.img_size or (64 if quick else 128 if recipe else 256)
    if img_size < MIN_IMG_SIZE:
        raise UsageError(f"--img-size {img_size}: expected at least {MIN_IMG_SIZE} (the "
                         "smallest image the data sets and the U-Net's pooling take)")
    try:
        from unet_course.model import check_input_size

        check_input_size(img_size, depth, "same")
    except ValueError as err:
        raise UsageError(f"--img-size: {err}") from None
    return dict(
        quick=quick, img_size=img_size, epochs=args.epochs or (1 if quick else 40),
        steps=args.steps_per_epoch or (2 if quick else None),
        lr=args.lr or 1e-3, loss=args.loss or "bce_dice",
    )


MIN_IMG_SIZE = 32
_DEFAULTS = dict(base_filters=16, depth=4, dropout=0.0, batch_norm=False,
                 upsampling="transpose", activation="elu")


def _model_builder(args: argparse.Namespace):
    """A zero-argument function that builds the chosen U-Net for images of any size."""
    from unet_course import model

    if args.model == "seed":
        return lambda: model.seed_unet(input_shape=(None, None, 3))
    options = {o: getattr(args, o) for o in _UNET_OPTIONS}
    return lambda: model.build_unet((None, None, 3), rescale=1 / 255, **options)


def _run_train(args: argparse.Namespace) -> int:
    settings = _train_settings(args)
    if args.weight_map and settings["loss"] != "bce_dice":
        raise UsageError(f"--weight-map trains with its own weighted BCE; drop --loss {args.loss}")
    _start_keras()
    if args.model == "recipe":
        return _run_train_recipe(args, settings)
    import keras

    from unet_course import datasets, files, train

    keras.utils.set_random_seed(args.seed)
    splits = datasets.load_splits(args.data, settings["img_size"], quick=settings["quick"],
                                  seed=args.seed)
    print(splits.describe())
    config = train.TrainConfig(epochs=settings["epochs"], batch_size=args.batch_size,
                               learning_rate=settings["lr"], loss=settings["loss"], seed=args.seed)
    accelerator = train.choose_accelerator(args.precision, args.xla)
    print(f"Training on {accelerator.describe()}")
    model = train.build_model(_model_builder(args), accelerator)
    train.compile_model(model, config, accelerator)
    train_seq, val_seq = train.make_sequences(
        splits, settings["img_size"], config.batch_size, seed=args.seed,
        augment=not args.no_augment, workers=args.workers,
    )
    if args.weight_map:
        train_seq = weight_map_training(model, train_seq, config, accelerator)
    steps = settings["steps"]
    if steps is not None and steps > len(train_seq):
        if args.steps_per_epoch is not None:
            print(f"note: --steps-per-epoch {steps} is more than the {len(train_seq)} batches "
                  f"of the training set; using {len(train_seq)}")
        steps = len(train_seq)
    if steps is not None:
        train_seq = _first_batches(train_seq, steps)
    args.out.mkdir(parents=True, exist_ok=True)
    history = train.fit(model, train_seq, val_seq, config, args.out)
    val_probs = train.predict_native(model, splits.val.images)
    scores = train.pixel_scores(splits.val.masks, val_probs, config.threshold)
    scores["best_threshold"], _ = train.choose_threshold(splits.val.masks, val_probs)
    report = _train_report(args, settings, splits, accelerator, history, scores)
    files.write_run_record(args.out, report)  # atomic, with model.keras's SHA-256
    print(json.dumps({k: report[k] for k in ("val_dice", "val_iou", "best_epoch")}))
    print(f"Wrote {args.out / 'model.keras'}, history.csv and metrics.json")
    return 0


def _first_batches(seq, steps: int):
    """``seq`` cut to its first ``steps`` batches of every epoch (each epoch draws a new order).

    Passing ``steps_per_epoch`` to Keras instead makes it carry one iterator across epochs
    and warn, misleadingly, "Your input ran out of data; interrupting training" whenever
    ``steps`` does not divide the number of batches.
    """
    seq.__class__ = type("FirstBatches", (type(seq),), {"__len__": lambda self: steps})
    return seq


def _run_train_recipe(args: argparse.Namespace, settings: dict) -> int:
    from unet_course import recipe

    options = {"img_size": settings["img_size"], "batch_size": args.batch_size, "seed": args.seed}
    if args.epochs:
        options["epochs"] = args.epochs
    if args.lr:
        options["learning_rate"] = args.lr
    try:
        chosen = recipe.settings(quick=settings["quick"], **options)
    except ValueError as err:
        raise UsageError(str(err)) from None
    report = recipe.run(args.data, chosen, args.out, quick=settings["quick"],
                        precision=args.precision, xla=args.xla, log=print)
    print(json.dumps({k: report[k] for k in ("val_dice", "val_iou", "val_dsb_map", "best_epoch")}))
    print(f"Wrote {args.out / 'model.keras'}, history.csv and metrics.json")
    return 0


def _train_report(args, settings, splits, accelerator, history, scores) -> dict:
    """What ``metrics.json`` holds: validation scores and everything needed to reproduce them.

    ``val_dice``/``val_iou`` are pixel scores over the validation images at native resolution
    and threshold 0.5; ``best_threshold`` is the one with the highest validation Dice, which
    ``evaluate`` uses by default on the test images.
    """
    logs = history.history
    best = int(max(range(len(logs["val_dice"])), key=lambda i: logs["val_dice"][i]))
    return {
        "val_dice": scores["dice"],
        "val_iou": scores["iou"],
        "threshold": scores["threshold"],
        "best_threshold": scores["best_threshold"],
        "val_images": scores["images"],
        "best_epoch": best + 1,
        "epochs_run": len(logs["val_dice"]),
        "data": str(args.data),
        "source": splits.source,
        "img_size": settings["img_size"],
        "seed": args.seed,
        "quick": settings["quick"],
        "model": args.model,
        "device": accelerator.describe(),
    }


def weight_map_training(model, train_seq, config, accelerator):
    """Switch a compiled model and its training batches to the U-Net paper's weight map.

    The masks lose the borders between touching nuclei (``instances.separate_touching``),
    each image gets the per-pixel weights of ``instances.unet_weight_map`` (w0 = 10,
    sigma = 5), which travel through augmentation with the mask, and the model is recompiled
    with ``losses.WeightedBCELoss`` (same optimizer settings and metrics). Validation batches
    are unchanged: the model is still judged on the true masks. Returns the new sequence.
    """
    import keras
    import numpy as np

    from unet_course import instances, losses
    from unet_course.augment import SegmentationSequence
    from unet_course.metrics import Dice, IoU

    separated = [instances.separate_touching(np.asarray(m)) for m in train_seq.masks]
    weights = [instances.unet_weight_map(m) for m in separated]
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=losses.WeightedBCELoss(),
        metrics=[Dice(threshold=config.threshold), IoU(threshold=config.threshold)],
        jit_compile=accelerator.jit_compile,
    )
    return SegmentationSequence(
        train_seq.images, separated, train_seq.batch_size, size=train_seq.size,
        augment=train_seq.augment, shuffle=train_seq.shuffle, seed=train_seq.seed,
        weights=weights, image_dtype=train_seq.image_dtype,
        augment_options=train_seq.augment_options, workers=train_seq.workers,
    )


# --------------------------------------------------------------------------- evaluate


def _add_evaluate(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="print pixel Dice and IoU of a trained model on held-out images (JSON)",
        description="Predict each held-out image at its native resolution (reflect-pad to a "
        "size the model accepts, crop the answer back) and print pixel Dice and IoU as JSON. "
        "Data settings and the threshold (chosen on validation data) default to those in "
        "metrics.json next to the model, so the held-out split is the one training never saw; "
        "a record that is missing or belongs to another model is refused unless you name the "
        "split's --seed yourself.",
    )
    parser.add_argument("--model", required=True, type=Path, help="a .keras file (from train)")
    parser.add_argument("--data", default=None,
                        help="'synthetic' or a DSB2018 folder (default: as in training)")
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the JSON to this new file (never the model or its record)")
    parser.add_argument("--overwrite", action="store_true", help="allow an existing --out file")
    parser.add_argument("--split", choices=("test", "val"), default="test")
    parser.add_argument("--img-size", type=_positive_int, default=None,
                        help="synthetic image side (default: as in training)")
    parser.add_argument("--seed", type=_seed, default=None,
                        help="split seed (default: as in training)")
    parser.add_argument("--threshold", type=_probability, default=None,
                        help="probability threshold (default: the one chosen on validation data "
                        "in training, else 0.5)")
    parser.add_argument("--quick", action="store_true", help="the quick-mode splits")
    parser.add_argument("--instances", choices=("components", "watershed"), default="watershed",
                        help="post-processing into nuclei for the instance score dsb_map "
                        "(Data Science Bowl 2018; default: watershed)")
    parser.set_defaults(func=_run_evaluate)


def _evaluate_settings(args: argparse.Namespace) -> dict:
    """Check the evaluate arguments; fill defaults from the model's own ``metrics.json``.

    The held-out split is defined by the training run's seed and data: they come from the
    record beside the model, which must belong to it (``files.read_run_record``); without
    one the user must name the seed, or the "test" images could be training images.
    """
    from unet_course import files
    from unet_course.runtime import quick_mode

    if not args.model.is_file():
        raise UsageError(f"--model {str(args.model)!r}: no such file; expected a .keras file")
    if args.out is not None:
        _check_report_file(args, args.data or "synthetic")
    if args.data is not None:
        _check_data(args.data)
    files.check_keras_file(args.model, "--model")
    try:
        trained = files.read_run_record(args.model)
    except ValueError:
        if args.seed is None:
            raise
        trained = None
    if trained is None and args.seed is None:
        raise UsageError(f"--model {str(args.model)!r} has no training record "
                         f"({str(args.model.parent / files.RECORD)!r} is missing), so its "
                         "test split is unknown; pass --seed (and --data) of its training run")
    trained = trained or {}
    settings = dict(
        data=args.data or trained.get("data", "synthetic"),
        img_size=args.img_size or trained.get("img_size"),
        seed=trained.get("seed") if args.seed is None else args.seed,
        threshold=args.threshold or trained.get("best_threshold", 0.5),
        quick=args.quick or quick_mode() or bool(trained.get("quick", False)),
        postprocessing=trained.get("postprocessing"),
    )
    _check_data(settings["data"])
    if args.out is not None:
        _check_report_file(args, settings["data"])
    return settings


def _check_report_file(args: argparse.Namespace, data: str) -> None:
    """``evaluate --out``: a new file in an existing, writable folder, never the model, its
    training record or a file inside the data; an existing file only with ``--overwrite``."""
    from unet_course import files

    out, flag = args.out, f"--out {str(args.out)!r}"
    if out.is_dir():
        raise UsageError(f"{flag} is a folder; expected a file name such as result.json")
    if not out.parent.is_dir():
        raise UsageError(f"{flag}: folder {str(out.parent)!r} does not exist")
    run_files = [args.model, *(args.model.parent / n for n in (files.RECORD, "history.csv"))]
    if out.resolve() in {f.resolve() for f in run_files}:
        raise UsageError(f"{flag} would replace the model or its training record; choose "
                         "another file")
    if data != "synthetic" and files.inside(out, data):
        raise UsageError(f"{flag} lies inside --data {data!r}; choose a file outside it")
    if out.exists() and not args.overwrite:
        raise UsageError(f"{flag} exists; choose another file or pass --overwrite")
    files.check_writable(out, "--out")


def evaluate_model(args: argparse.Namespace, settings: dict):
    """Load the model and the held-out split; return ``(split, probs, result dict)``."""
    from unet_course import datasets, recipe, train

    model = recipe.load_model(args.model)
    classes = model.output_shape[-1]
    if classes not in (1, 3):
        raise UsageError(f"--model {str(args.model)!r} outputs shape {tuple(model.output_shape)}: "
                         "evaluate scores one foreground probability (1 channel) or the "
                         "recipe's background / interior / boundary classes (3 channels)")
    splits = datasets.load_splits(settings["data"], settings["img_size"], quick=settings["quick"],
                                  seed=settings["seed"])
    split = getattr(splits, args.split)
    result = {"model": str(args.model), "data": str(settings["data"]), "split": args.split,
              "source": splits.source, "images": len(split), "seed": settings["seed"]}
    if classes == 3:  # background / interior / boundary: the recipe's model
        probs = recipe.predict_classes(model, split.images)
        post = dict(settings["postprocessing"] or recipe.DEFAULT_POSTPROCESSING)
        if args.threshold:
            post["threshold"] = args.threshold
        found = recipe.scores(split.labels, probs, post, method=args.instances)
        result.update(found, threshold=post["threshold"], postprocessing=post,
                      instances=args.instances)
    else:
        probs = train.predict_native(model, split.images)
        scores = train.pixel_scores(split.masks, probs, settings["threshold"])
        result.update(dice=scores["dice"], iou=scores["iou"], threshold=scores["threshold"])
        result.update(instance_score(split.labels, probs, settings["threshold"], args.instances))
    result["baseline"] = _baseline_beside(split, result)
    return split, probs, result


def _baseline_beside(split, result: dict) -> dict:
    """The Otsu pipelines on the same images, and whether the model beats the best of them."""
    from unet_course.baseline import baseline_scores

    classical = baseline_scores(split.images, split.labels)
    best = max(classical, key=lambda name: classical[name]["dsb_map"])
    return {**classical, "model_beats_baseline": bool(
        result["dice"] > classical[best]["dice"] and result["dsb_map"] > classical[best]["dsb_map"])}


def instance_score(labels, probs, threshold: float, method: str) -> dict:
    """``{"dsb_map", "instances", "objects"}``: probabilities -> nuclei -> DSB 2018 score."""
    from unet_course import instances

    found = [instances.label_instances(p, threshold, method) for p in probs]
    return {"dsb_map": instances.dsb_score_dataset(labels, found), "instances": method,
            "objects": int(sum(f.max() for f in found))}


def _run_evaluate(args: argparse.Namespace) -> int:
    settings = _evaluate_settings(args)
    _start_keras()
    _, _, result = evaluate_model(args, settings)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        from unet_course.files import write_text

        write_text(args.out, text + "\n")
    return 0


# --------------------------------------------------------------------------- predict

def _add_predict(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="segment images into nuclei; write 16-bit label PNGs and overlays",
        description="Segment an image, or every image file of a folder, at its native size: "
        "predicted tile by tile with mirrored borders (overlap-tile), split into nuclei, and "
        "written as OUTPUT/<name>_labels.png (16-bit: 0 = background, 1..n = nuclei) and "
        "OUTPUT/<name>_overlay.png. Images are read one way (unet_course.files): the recipe's "
        "models take the stored values (8-bit, 16-bit or float; they normalise each image by "
        "its percentiles); older models take 0-255, 16-bit and float images mapped by their "
        "1st and 99.8th percentiles. Every input is decoded before anything is written; "
        "existing output files are never replaced without --overwrite, and --output may not "
        "lie inside an --input folder.",
    )
    parser.add_argument("--model", required=True, type=Path, help="a .keras file (from train)")
    parser.add_argument("--input", required=True, type=Path, help="an image file or a folder")
    parser.add_argument("--output", required=True, type=Path, help="output folder (made if missing)")
    parser.add_argument("--instances", choices=("components", "watershed"), default="watershed",
                        help="how probabilities become nuclei (default: watershed)")
    parser.add_argument("--threshold", type=_probability, default=None,
                        help="foreground threshold (default: the one chosen on validation data "
                        "in training, from metrics.json beside the model; else 0.5)")
    parser.add_argument("--min-size", type=_nonnegative_int, default=None,
                        help="drop objects smaller than this many pixels (default: as chosen "
                        "in training; else 10)")
    parser.add_argument("--tile", type=_positive_int, default=None,
                        help="tile side (default: the model's input size, else 512)")
    parser.add_argument("--overlap", type=_nonnegative_int, default=None,
                        help="output pixels dropped at each tile edge (default: tile // 8)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.set_defaults(func=_run_predict)


def _run_predict(args: argparse.Namespace) -> int:
    from unet_course import predict

    jobs = predict.plan(args.model, args.input, args.output, args.overwrite)
    _start_keras()
    written = predict.run(args.model, jobs, args.output, method=args.instances,
                          threshold=args.threshold, min_size=args.min_size, tile=args.tile,
                          overlap=args.overlap, log=print)
    print(f"Wrote {written} files to {args.output}")
    return 0


# --------------------------------------------------------------------------- main

SUBCOMMANDS = (_add_train, _add_evaluate, _add_predict, _add_doctor)


def build_parser() -> argparse.ArgumentParser:
    """The ``unet-course`` parser with one subparser per entry of ``SUBCOMMANDS``."""
    parser = _Parser(prog=PROG, description="Train and evaluate U-Nets for nuclei segmentation.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       parser_class=_Parser)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 2 user error, 1 internal error)."""
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UsageError as err:
        return _fail(f"{PROG}: error: {err}", EXIT_USAGE)
    except (ValueError, TypeError, FileNotFoundError, NotADirectoryError, PermissionError) as err:
        return _fail(f"{PROG}: error: {_one_line(err)}", EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail(f"{PROG}: interrupted", 130)
    except OSError as err:  # a full disk, a read-only folder: the user's to fix
        from unet_course.files import user_os_error

        if user_os_error(err):
            return _fail(f"{PROG}: error: {_one_line(err)}", EXIT_USAGE)
        return _internal(err)
    except Exception as err:
        return _internal(err)


def _internal(err: Exception) -> int:
    """A bug, not the user's fault: still one line, unless UNET_COURSE_DEBUG is set."""
    if os.environ.get("UNET_COURSE_DEBUG"):
        raise err
    return _fail(f"{PROG}: internal error: {type(err).__name__}: {_one_line(err)} "
                 "(set UNET_COURSE_DEBUG=1 for the traceback)", 1)


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _fail(message: str, code: int) -> int:
    print(message, file=sys.stderr)
    return code
