"""``unet-course evaluate``: check the arguments, score a saved model on its held-out split
(``unet_course.evaluate``), print the report as JSON on stdout and the comparison with the
classical pipelines on stderr."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from unet_course.commands import common
from unet_course.commands.common import UsageError, add_command, check_data, start_keras


def add(subparsers) -> None:
    add_command(
        subparsers, run, "evaluate", "print pixel Dice and IoU of a trained model on held-out "
        "images (JSON)", "Predict each held-out image as predict does and print pixel Dice, "
        "IoU and the instance score as JSON, beside the Otsu baselines. The data, split and "
        "threshold default to those in metrics.json beside the model, so the held-out images "
        "are ones training never saw; without that record, name the split's --seed.", {
        "--model": "a .keras file (from train)",
        "--data": "'synthetic' or a DSB2018 folder (default: as in training)",
        "--out": "also write the JSON to this new file (never the model or its record)",
        "--overwrite": "replace an existing --out file, if it is a report evaluate wrote",
        "--split": dict(choices=("test", "val"), default="test"),
        "--img-size": "synthetic image side (default: as in training)",
        "--seed": "split seed (default: as in training, the only one its folder takes)",
        "--threshold": "probability threshold (default: as chosen in training, else 0.5)",
        "--scale": "'auto' (default for a model from train) resizes each image as predict "
                   "does; a number from 0.1 to 10 resizes every image by it (1 = as it is)",
        "--quick": "the quick-mode splits",
        "--instances": "how probabilities become nuclei for the instance score (default: "
                       "watershed)",
    })


def settings(args: argparse.Namespace) -> dict:
    """The evaluate settings: the arguments checked, the rest from the model's own record;
    raises ``UsageError`` naming the flag or file (without a record, the seed must be given)."""
    from unet_course.rescale import pipeline
    from unet_course.runtime import quick_mode

    if args.out is not None:
        _check_report_file(args, args.data or "synthetic")
    if args.data is not None:
        check_data(args.data)
    common.check_model_path(args.model)
    trained, why = common.run_record(args.model)
    if why and args.seed is None:
        raise UsageError(f"{why}, so its test split is unknown; pass --seed (and --data) of "
                         "its training run")
    if "postprocessing" in trained or args.scale is not None:  # checked before any work
        try:
            pipeline(trained, args.scale)
        except ValueError as error:
            raise UsageError(f"--model {str(args.model)!r}: {error}") from None
    total = common.physical_memory()
    if args.img_size and total and 64 * args.img_size**2 > 0.8 * total:  # a slide and its maps
        raise UsageError(f"--img-size {args.img_size}: one synthetic slide and its maps need "
                         f"about {64 * args.img_size**2 / 2**30:,.0f} GiB; this machine has "
                         f"{total / 2**30:.0f} GiB")
    settings = dict(data=args.data or trained.get("data", "synthetic"),
                    img_size=args.img_size or trained.get("img_size"),
                    seed=trained.get("seed") if args.seed is None else args.seed,
                    threshold=args.threshold or trained.get("best_threshold", 0.5),
                    quick=args.quick or quick_mode() or bool(trained.get("quick", False)),
                    postprocessing=trained.get("postprocessing"), record=trained,
                    scale=args.scale)
    check_data(settings["data"])
    _check_split(args, settings, trained)
    if args.out is not None:
        _check_report_file(args, settings["data"])
    return settings


def _check_split(args: argparse.Namespace, settings: dict, trained: dict) -> None:
    """Refuse a ``--seed`` or quick mode that splits the training folder otherwise than
    training did (its "test" slides would include training slides)."""
    from unet_course import files

    data = trained.get("data")
    if not data or "synthetic" in (data, settings["data"]) \
            or not files.inside(settings["data"], data) or not files.inside(data, settings["data"]):
        return  # another folder: the record's split does not apply to it
    if args.seed is not None and args.seed != trained.get("seed"):
        raise UsageError(f"--seed {args.seed}: the model was trained on {data!r} with seed "
                         f"{trained.get('seed')} (its metrics.json), and another seed splits that "
                         "folder otherwise: its test slides would include training slides; "
                         "drop --seed")
    if settings["quick"] and not trained.get("quick", False):
        raise UsageError(f"--quick (or UNET_COURSE_QUICK): the model was trained on all of "
                         f"{data!r}, and quick mode keeps a few dozen slides split otherwise: "
                         "its test slides would include training slides; drop it")


def _check_report_file(args: argparse.Namespace, data: str) -> None:
    """Refuse an ``--out`` that is a folder, in a missing or unwritable folder, the model or its
    record, inside ``data``, or an existing file but an evaluate report with ``--overwrite``."""
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
    if out.exists() and not _is_report(out):
        raise UsageError(f"{flag} exists and is not a report written by evaluate: --overwrite "
                         "replaces only those; choose another file")
    files.check_writable(out, "--out")


REPORT_KEYS = ("model", "data", "split", "images", "dice", "iou")  # in every evaluate report


def _is_report(path: Path) -> bool:
    """Whether ``path`` holds a JSON object with the keys of an evaluate report."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(report, dict) and all(key in report for key in REPORT_KEYS)


def beside_line(result: dict) -> str:
    """The model's instance score beside the best classical pipeline's, and a warning when
    the model does not win."""
    side, best = result["baseline"], result["baseline"]["best_baseline"]
    line = (f"{result['split']} instance score on {result['images']} images: model "
            f"{result['dsb_map']:.3f}, best classical pipeline ({best}) "
            f"{side[best]['dsb_map']:.3f}")
    if side["model_beats_baseline"]:
        return line
    return (line + "\nwarning: the model does not beat the classical pipeline on these images "
            "(pixel Dice and instance score). Train longer (train --steps), check the masks and "
            "the polarity of your images.")


def run(args: argparse.Namespace) -> int:
    """Check the arguments, score the model, print the report and write it to ``--out``."""
    from unet_course import interrupts
    from unet_course.evaluate import evaluate_model

    chosen = settings(args)
    interrupts.check()
    start_keras()
    try:
        interrupts.check()
        _, _, result = evaluate_model(args.model, chosen, args.split, args.instances,
                                      args.threshold)
        interrupts.check()
    except ValueError as error:  # a model for grey images: the slides are RGB
        if not str(error).startswith("expected images (H, W, 1)"):
            raise
        raise UsageError(f"--model {str(args.model)!r} takes 1-channel (grey) images, while "
                         f"the slides of --data {chosen['data']!r} are RGB: evaluate scores "
                         "models that take RGB images (predict converts images to grey for "
                         "it)") from None
    except KeyboardInterrupt:
        raise KeyboardInterrupt("stopped while scoring; no report printed"
                                + (f", {str(args.out)!r} not written" if args.out else "")
                                + "; nothing was changed") from None
    text = json.dumps(result, indent=2)
    print(text)
    print(beside_line(result), file=sys.stderr)
    if args.out is not None:
        from unet_course.files import write_text

        write_text(args.out, text + "\n")
    return 0

