"""Does the U-Net earn its place? The default recipe against the classical baseline (issue 9).

    python benchmarks/quality.py [--set steps=1920 --set base_filters=8 ...] [--precision auto]
                                 [--out benchmarks/results/quality_cpu.md] [--quick]

Trains the default recipe (``unet_course.recipe``, exactly what ``python -m unet_course
train`` runs) with any ``--set`` overrides, then scores on the same images:

- the baseline: global Otsu + connected components, and Otsu + distance-transform watershed
  (``unet_course.baseline``);
- the U-Net: foreground + connected components and the recipe's interior-seeded watershed,
  each image predicted at its own size, and the default of ``predict`` and ``evaluate``: the
  same watershed on size-normalised predictions (``unet_course.rescale``), each with the
  post-processing chosen on validation predictions made the same way;

on two test sets: ``--test-images`` fresh synthetic slides (256x256, seed 2026: never seen in
training or tuning) and the real Data Science Bowl 2018 slide of ``unet_course.real_slide``
(125 nuclei, 512x512, 16-bit). It reports pixel Dice and IoU, the instance score (DSB 2018
mean average precision over IoU 0.5 ... 0.95) and the wall time of training (data, fit,
tuning), with the machine. Appends a Markdown section to ``--out`` when given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


TEST_SEED = 2026


def _parse_set(items: list[str]) -> dict:
    changes = {}
    for item in items:
        key, _, value = item.partition("=")
        changes[key] = json.loads(value) if value not in ("True", "False") else value == "True"
    return changes


def _machine() -> str:
    import keras

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = Path("/proc/cpuinfo").read_text()
        cpu += " (AVX-512 BF16)" if "avx512_bf16" in flags else " (AVX2)" if "avx2" in flags else ""
    except OSError:
        pass
    return (f"{os.cpu_count()} cores, {cpu}; Python {platform.python_version()}, "
            f"Keras {keras.__version__} on {keras.backend.backend()}")


def add_model_arguments(parser: argparse.ArgumentParser, test_images: int) -> None:
    """``--model``, ``--test-images`` and ``--out`` of the benchmarks that score a trained model
    (checked by ``check_model_and_out``)."""
    parser.add_argument("--model", type=Path, required=True,
                        help="a model.keras written by `python -m unet_course train`, with "
                             "its metrics.json beside it")
    parser.add_argument("--test-images", type=int, default=test_images,
                        help=f"synthetic test slides, at least 1 (default: {test_images})")
    parser.add_argument("--out", type=Path, default=None,
                        help="a Markdown file to append the table to (made if missing; its "
                             "folder must exist)")


def check_model_and_out(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """For the benchmarks that score a trained model (``magnification.py``, ``appearance.py``):
    refuse, before any work, ``--test-images`` under 1, a ``--model`` that is not a file or
    has no ``metrics.json`` beside it, and an ``--out`` that is a folder, lies in no existing
    folder, or is the model or its record."""
    if args.test_images < 1:
        parser.error(f"--test-images must be at least 1, got {args.test_images}")
    if not args.model.is_file():
        parser.error(f"--model {str(args.model)!r} is not a file; train one first "
                     "(python -m unet_course train --out run)")
    if args.out is not None:
        taken = {args.model.resolve(), (args.model.parent / "metrics.json").resolve()}
        if args.out.is_dir() or not args.out.parent.is_dir() or args.out.resolve() in taken:
            parser.error(f"--out {str(args.out)!r} must be a Markdown file in an existing folder, "
                         "not a folder, the model or its metrics.json")
    if not (args.model.parent / "metrics.json").is_file():
        parser.error(f"--model {str(args.model)!r} has no metrics.json beside it: this benchmark "
                     "needs a model that `python -m unet_course train` wrote, with its record")


def report(text: str, out: Path | None) -> None:
    """Print a Markdown report and append it to ``out`` when given (every benchmark here)."""
    print(text)
    if out:
        with open(out, "a") as handle:
            handle.write("\n" + text)


def evaluate(model, record: dict, images, labels) -> dict:
    """Baseline and U-Net pipelines on the same images: name -> {dice, iou, dsb_map}.

    The U-Net's default (``unet_watershed``) is what ``predict`` and ``evaluate`` run: each
    image size-normalised (``rescale.pipeline`` of the run's record), then the interior
    watershed; ``unet_watershed_native`` and ``unet_components`` predict each image at its
    own size, with the settings chosen for that on the validation slides."""
    from unet_course import baseline, predict, rescale
    from unet_course.evaluate import scores

    rows = {name: {k: v[k] for k in ("dice", "iou", "dsb_map")}
            for name, v in baseline.baseline_scores(images, labels).items()}
    native = predict.predict_classes(model, images)
    plan = rescale.pipeline(record)
    sized, _ = rescale.predict_pipeline(model, images, plan, first=native)
    runs = {"unet_components": (native, rescale.pipeline(record, 1).settings, "components"),
            "unet_watershed_native": (native, rescale.pipeline(record, 1).settings,
                                      "watershed"),
            "unet_watershed": (sized, plan.settings, "watershed")}
    for name, (probs, post, method) in runs.items():
        found = scores(labels, probs, post, method=method)
        rows[name] = {k: found[k] for k in ("dice", "iou", "dsb_map")}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a field of unet_course.recipe.Recipe (JSON value)")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--test-images", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import keras

    from unet_course import real_slide, recipe
    from unet_course.data import make_nuclei

    chosen = recipe.settings(quick=args.quick, **_parse_set(args.set))
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        record = recipe.run("synthetic", chosen, run_dir, quick=args.quick,
                            precision=args.precision, log=lambda *a: None)
        wall = time.perf_counter() - start
        model = keras.saving.load_model(Path(run_dir) / "model.keras")
    post = record["postprocessing"]
    n_test = 4 if args.quick else args.test_images
    images, labels = make_nuclei(n_test, size=chosen.slide_size, seed=TEST_SEED)
    tables = {"synthetic": evaluate(model, record, images, labels)}
    if real_slide.is_fetched():
        image, truth = real_slide.load_real_slide()
        tables["real slide"] = evaluate(model, record, [real_slide.as_rgb(image)], [truth])
    changes = {k: v for k, v in dataclasses.asdict(chosen).items()
               if getattr(recipe.Recipe(), k) != v}
    lines = [f"### recipe {json.dumps(changes) if changes else '(defaults)'}"
             f"{' [quick]' if args.quick else ''}", "",
             f"- machine: {_machine()}; {record['device']}",
             f"- training wall time (data + fit + tuning): {wall:.0f} s; steps run "
             f"{record['steps_run']}, best at step {record['best_step']}; post-processing {post} "
             f"(size-normalised; native: {record['postprocessing_native']})",
             f"- synthetic test: {n_test} fresh {chosen.slide_size}x{chosen.slide_size} slides "
             f"(seed {TEST_SEED})", "",
             "| test set | pipeline | pixel Dice | pixel IoU | instance score |",
             "| --- | --- | --- | --- | --- |"]
    for name, rows in tables.items():
        for pipeline, row in rows.items():
            lines.append(f"| {name} | {pipeline} | {row['dice']:.3f} | {row['iou']:.3f} | "
                         f"{row['dsb_map']:.3f} |")
    text = "\n".join(lines) + "\n"
    report(text, args.out)


if __name__ == "__main__":
    main()
