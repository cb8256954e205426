"""Does the U-Net paper's border weight map give better nuclei? Two trainings that differ only
in the weights (issue 11).

    python benchmarks/weight_map.py [--set steps=1920 ...] [--out benchmarks/results/weight_map_cpu.md]
    python benchmarks/weight_map.py --quick      # a smoke run of the script (learns nothing)

Both arms train the recipe's model with one sigmoid output (``recipe.build_model`` with
``targets="binary"``: percentile normalisation, batch normalisation, 16 filters, depth 4) on the
same synthetic slides, the same batches (same crops, flips and rotations, in the same order),
from the same initial weights, with the same optimizer and schedule (``recipe.compile_model``)
and the same number of steps. Both learn the paper's targets: touching nuclei cut apart by a
gap of background (``targets.separate_touching``), with a pixel-weighted binary cross-entropy
(``losses.WeightedBCELoss``). The one difference is the weight of each pixel:

- ``class balance``: ``targets.class_balance_weights``, the paper's ``w_c`` alone;
- ``paper's w``: ``targets.unet_weight_map`` (eq. 2, ``w_0 = 10``, ``sigma = 5``): ``w_c``
  plus the border term that makes the gaps between touching nuclei expensive.

Each model is scored on fresh synthetic test slides (seed 2026) and on the real slide of
``unet_course.real_slide`` with two post-processings: connected components of the mask at
0.5 (the paper's way: the gaps separate the nuclei) and a distance-transform watershed whose
threshold and minimum size are chosen on the validation slides (``postprocess.tune_postprocessing``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).parent))

TEST_SEED = 2026


def train_arm(splits, chosen, weigh) -> tuple:
    """One arm: the same seed, batches and schedule; ``weigh(separated_labels)`` the weights."""
    import keras
    import numpy as np

    from unet_course import losses, recipe, targets
    from unet_course.sequence import SegmentationSequence

    keras.utils.set_random_seed(chosen.seed)
    model = recipe.build_model(chosen)
    recipe.compile_model(model, chosen, jit_compile=False, loss=losses.WeightedBCELoss())
    separated = [targets.separate_touching(np.asarray(m)) for m in splits.train.labels]
    no_change = {"brightness": 0.0, "contrast": 0.0}
    train_seq = SegmentationSequence(
        splits.train.images, separated, chosen.batch_size, size=chosen.img_size, augment=True,
        shuffle=True, seed=chosen.seed, weights=[weigh(m) for m in separated],
        image_dtype="uint8", augment_options=no_change, batches=recipe.steps_per_check(chosen))
    start = time.perf_counter()
    model.fit(train_seq, epochs=chosen.checks, verbose=0)
    return model, time.perf_counter() - start


def score(model, post: dict, images, labels) -> dict:
    """Pixel Dice, instance score and F1 at IoU 0.5 of both post-processings."""
    from unet_course import evaluate, postprocess, predict, scoring

    probs = predict.predict_classes(model, images)
    fixed = {"threshold": 0.5, "min_size": 10}
    row = {"dice": evaluate.scores(labels, probs, fixed, method="components")["dice"]}
    for name, method, settings in (("components", "components", fixed),
                                   ("watershed", "watershed", post)):
        found = [postprocess.label_instances(p, method=method, **settings) for p in probs]
        row[name] = scoring.dsb_score_dataset(list(labels), found)
        counts = [scoring.match_counts(t, f, (0.5,)) for t, f in zip(labels, found, strict=True)]
        tp, fp, fn = (sum(int(c[i][0]) for c in counts) for i in range(3))
        row[f"{name}_f1"] = 2 * tp / max(2 * tp + fp + fn, 1)
    return row


def main() -> None:
    from quality import _machine, _parse_set, report

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a field of unet_course.recipe.Recipe (JSON value)")
    parser.add_argument("--test-images", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from unet_course import datasets, postprocess, predict, real_slide, recipe, targets
    from unet_course.data import make_nuclei

    chosen = recipe.settings(quick=args.quick, targets="binary", **_parse_set(args.set))
    splits = datasets.load_splits("synthetic", chosen.slide_size, quick=args.quick,
                                  seed=chosen.seed,
                                  counts={"train": chosen.train_images, "val": chosen.val_images})
    n_test = 4 if args.quick else args.test_images
    images, labels = make_nuclei(n_test, size=chosen.slide_size, seed=TEST_SEED)
    tests = {"synthetic": (list(images), list(labels))}
    if real_slide.is_fetched():
        image, truth = real_slide.load_real_slide()
        tests["real slide"] = ([real_slide.as_rgb(image)], [truth])
    arms = {"class balance w_c only": lambda labels: targets.class_balance_weights(labels > 0),
            "paper's w (eq. 2)": targets.unet_weight_map}
    rows = []
    for arm, weigh in arms.items():
        model, seconds = train_arm(splits, chosen, weigh)
        post, val = postprocess.tune_postprocessing(splits.val.labels,
                                               predict.predict_classes(model, splits.val.images))
        for test, (imgs, labs) in tests.items():
            r = score(model, post, imgs, labs)
            rows.append(f"| {arm} | {test} | {r['dice']:.3f} | {r['components']:.3f} | "
                        f"{r['components_f1']:.3f} | {r['watershed']:.3f} | "
                        f"{r['watershed_f1']:.3f} | {seconds:.0f} s |")
            print(rows[-1], flush=True)
    steps = chosen.checks * recipe.steps_per_check(chosen)
    text = "\n".join([
        f"### {steps} steps of {chosen.batch_size} crops of {chosen.img_size}x{chosen.img_size}"
        f"{' [quick]' if args.quick else ''}", "",
        f"- machine: {_machine()}",
        f"- command: `{' '.join(['python', 'benchmarks/weight_map.py', *sys.argv[1:]])}`",
        f"- synthetic test: {n_test} fresh {chosen.slide_size}x{chosen.slide_size} slides "
        f"(seed {TEST_SEED}); watershed settings chosen on {chosen.val_images} validation slides",
        "",
        "| weights | test set | pixel Dice | components: instance score | F1 at 0.5 "
        "| watershed: instance score | F1 at 0.5 | training |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |", *rows, ""])
    report(text, args.out)


if __name__ == "__main__":
    main()
