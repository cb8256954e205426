"""A practitioner's own folder: the default ``train`` on 20, 40 or 100 annotated slides (issue 23).

    python benchmarks/folders.py --real ../shared/real/dsb2018_stage1_train
                                 [--sizes 20,40,100] [--seeds 1,2] [--set synthetic_share=0]
                                 [--test-slides 30] [--out benchmarks/results/folders_cpu.md]
    python benchmarks/folders.py --synthetic [--sizes 40] [--seeds 1,2] [--out ...]

``--real``: a folder in the Data Science Bowl 2018 layout. Its slides are grouped by modality
(grey fluorescence, grey bright-field, stained tissue in colour) and size, as a proxy for the
experiment they come from. For each seed, ``sklearn.model_selection.GroupShuffleSplit`` holds
half of the groups out (the largest group, grey fluorescence at 256x256, always stays in);
a training folder of each size is drawn from the other groups, and up to ``--test-slides``
test slides from the held-out groups, in turn from each group. So every test slide is of a
size or modality that no training slide has.

``--synthetic``: the folder is ``N`` synthetic 256x256 slides written in the same layout,
the test slides 64 fresh ones (seed 2026).

Each folder is trained with the defaults of ``python -m unet_course train --data FOLDER``
(``recipe.run``; ``--set`` changes a ``Recipe`` field), then the test slides are predicted as
``predict`` does (``rescale.pipeline`` of the run's record) and scored with the Data Science
Bowl 2018 instance score, beside: Otsu + watershed (``baseline.otsu_instances``) and the
classical pipeline with the settings ``train`` tuned on the folder's validation slides
(``baseline.classical_instances``). The real slide of ``unet_course.real_slide`` is scored
too. Appends a Markdown table (mean and spread over the seeds) to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import _machine, _parse_set  # noqa: E402

TEST_SEED = 2026


def modality(image) -> str:
    """``"fluorescence"``, ``"bright-field"`` (both grey) or ``"colour"`` for an RGB slide."""
    import numpy as np

    if not (np.array_equal(image[..., 0], image[..., 1])
            and np.array_equal(image[..., 1], image[..., 2])):
        return "colour"
    return "bright-field" if np.median(image) > 100 else "fluorescence"


def groups(root: Path) -> dict[str, str]:
    """id -> ``"<modality> <H>x<W>"`` for every slide of a DSB2018 folder."""
    import numpy as np
    from PIL import Image

    from unet_course.dsb2018 import dsb2018_ids

    found = {}
    for sample in dsb2018_ids(root):
        image = np.asarray(Image.open(root / sample / "images" / f"{sample}.png"))[..., :3]
        found[sample] = f"{modality(image)} {image.shape[0]}x{image.shape[1]}"
    return found


def held_out(found: dict[str, str], seed: int, sizes: list[int], test_slides: int):
    """(training folders' ids by size, test ids) for one seed: test groups never trained on."""
    import numpy as np
    from sklearn.model_selection import GroupShuffleSplit

    ids = sorted(found)
    biggest = max(set(found.values()), key=list(found.values()).count)
    others = [i for i in ids if found[i] != biggest]
    split = GroupShuffleSplit(n_splits=1, test_size=0.5, random_state=seed)
    keep, out = next(split.split(others, groups=[found[i] for i in others]))
    pool = sorted([i for i in ids if found[i] == biggest] + [others[k] for k in keep])
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(pool))
    folders = {n: sorted(order[:n] if n else order) for n in sizes}  # 0: the whole pool
    test_groups: dict[str, list[str]] = {}
    for k in rng.permutation(out):
        test_groups.setdefault(found[others[k]], []).append(others[k])
    test = []
    while len(test) < test_slides and any(test_groups.values()):
        for members in test_groups.values():
            if members and len(test) < test_slides:
                test.append(members.pop())
    return folders, sorted(test)


def link_folder(root: Path, ids: list[str], dest: Path) -> Path:
    """A DSB2018 folder at ``dest`` whose samples are symbolic links into ``root``."""
    dest.mkdir(parents=True)
    for sample in ids:
        (dest / sample).symlink_to((root / sample).resolve(), target_is_directory=True)
    return dest


def synthetic_folder(n: int, seed: int, dest: Path) -> Path:
    """``n`` synthetic 256x256 slides written at ``dest`` in the DSB2018 layout."""
    import numpy as np
    from PIL import Image

    from unet_course.data import make_nuclei

    images, labels = make_nuclei(n, size=256, seed=seed)
    for k, (image, label) in enumerate(zip(images, labels, strict=True)):
        sample = dest / f"slide{k:03d}"
        (sample / "images").mkdir(parents=True)
        (sample / "masks").mkdir()
        Image.fromarray(image).save(sample / "images" / f"slide{k:03d}.png")
        for value in range(1, int(label.max()) + 1):
            if (label == value).any():
                Image.fromarray(((label == value) * 255).astype(np.uint8)).save(
                    sample / "masks" / f"n{value:03d}.png")
    return dest


def score_run(run: Path, images, labels) -> dict:
    """Per-slide instance scores of the run's model (as ``predict``: ``unet``; at each
    slide's own size: ``unet_native``), of Otsu + watershed and of the tuned classical
    pipeline on these slides, and the run's validation scores."""
    import keras

    from unet_course import baseline, files, rescale
    from unet_course.postprocess import label_instances
    from unet_course.scoring import dsb_score

    record = files.read_run_record(run / "model.keras")
    model = keras.saving.load_model(run / "model.keras")
    row = {}
    for name, scale in (("unet", None), ("unet_native", 1)):
        plan = rescale.pipeline(record, scale)
        probs, _ = rescale.predict_pipeline(model, images, plan)
        row[name] = [dsb_score(t, label_instances(p, method="watershed", **plan.settings))
                     for t, p in zip(labels, probs, strict=True)]
    settings = record["val_classical"]["settings"]
    row["classical"] = [dsb_score(t, baseline.classical_instances(im, **settings))
                        for im, t in zip(images, labels, strict=True)]
    row["otsu_watershed"] = [dsb_score(t, baseline.otsu_instances(im))
                             for im, t in zip(images, labels, strict=True)]
    return {**row, "val_unet": record["val_dsb_map"],
            "val_classical": record["val_classical"]["dsb_map"],
            "best_step": record["best_step"], "seconds": record["train_seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--real", type=Path, help="a folder in the DSB2018 layout")
    where.add_argument("--synthetic", action="store_true", help="synthetic folders")
    parser.add_argument("--sizes", default="20,40,100",
                        help="training folder sizes; 'all': every slide outside the held-out "
                        "groups")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--test-slides", type=int, default=30)
    parser.add_argument("--set", action="append", default=[], help="a Recipe field, key=value")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    sizes = [0 if s == "all" else int(s) for s in args.sizes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.real is not None and not args.real.is_dir():
        parser.error(f"--real {args.real}: not a folder")
    if args.out is not None and not args.out.parent.is_dir():
        parser.error(f"--out {args.out}: its folder does not exist")
    changes = _parse_set(args.set)
    lines = run_all(args, sizes, seeds, changes)
    print("\n".join(lines))
    if args.out is not None:
        with open(args.out, "a") as out:
            out.write("\n".join(lines) + "\n\n")


def run_all(args, sizes: list[int], seeds: list[int], changes: dict) -> list[str]:
    import numpy as np

    from unet_course import data, datasets, real_slide, recipe
    from unet_course.dsb2018 import load_dsb2018

    slide, slide_labels = real_slide.load_real_slide()
    slide = real_slide.as_rgb(slide)
    found = groups(args.real) if args.real else None
    results: dict[int, list[dict]] = {n: [] for n in sizes}
    work = Path(tempfile.mkdtemp(prefix="folders-"))
    try:
        for seed in seeds:
            if found:
                folders, test = held_out(found, seed, sizes, args.test_slides)
                images, labels = load_dsb2018(args.real, ids=test)[:2]
                images = [np.asarray(im)[..., :3] for im in images]
            else:
                images, labels = data.make_nuclei(64, size=256, seed=TEST_SEED)
            for n in sizes:
                start = time.perf_counter()
                folder = (link_folder(args.real, folders[n], work / f"f{seed}_{n}") if found else
                          synthetic_folder(n, 1000 + seed, work / f"f{seed}_{n}"))
                chosen = dataclasses.replace(recipe.settings(seed=seed), **changes)
                recipe.run(str(folder), chosen, work / f"r{seed}_{n}", log=lambda *a: None)
                row = score_run(work / f"r{seed}_{n}", list(images), list(labels))
                row["real_slide"] = score_run(work / f"r{seed}_{n}", [slide],
                                              [slide_labels])["unet"][0]
                row["wall"] = time.perf_counter() - start
                row["groups"] = [found[i] for i in test] if found else ["synthetic"] * len(images)
                print(json.dumps({"seed": seed, "slides": n, **row}), flush=True)
                row["per_slide"] = {k: row[k] for k in ("unet", "unet_native", "classical",
                                                         "otsu_watershed")}
                for key in row["per_slide"]:
                    row[key] = float(np.mean(row[key]))
                results[n].append(row)
                shutil.rmtree(work / f"r{seed}_{n}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    del datasets
    return table(args, results, changes)


def table(args, results: dict[int, list[dict]], changes: dict) -> list[str]:
    import numpy as np

    by_group = groups_table(results)

    def cell(rows, key):
        values = np.array([r[key] for r in rows], float)
        return f"{values.mean():.3f} ± {values.std():.3f}" if len(values) > 1 else f"{values[0]:.3f}"

    source = f"real slides of {args.real}" if args.real else "synthetic slides"
    lines = [f"## {time.strftime('%Y-%m-%d')}: folders of {source}"
             + (f", {changes}" if changes else ""), "",
             f"`python benchmarks/folders.py {' '.join(sys.argv[1:])}`; {_machine()}.", "",
             "| slides | U-Net (test) | tuned classical (test) | Otsu + watershed (test) "
             "| U-Net / classical | U-Net at own size (test) | U-Net (val) | classical (val) "
             "| real slide | best step | minutes |", "| " + " | ".join(["---"] + ["---:"] * 10)
             + " |"]
    for n, rows in results.items():
        ratio = np.array([r["unet"] / max(r["classical"], r["otsu_watershed"], 1e-9) for r in rows])
        lines.append(f"| {n or 'all'} | {cell(rows, 'unet')} | {cell(rows, 'classical')} | "
                     f"{cell(rows, 'otsu_watershed')} | {ratio.mean():.2f} | "
                     f"{cell(rows, 'unet_native')} | "
                     f"{cell(rows, 'val_unet')} | {cell(rows, 'val_classical')} | "
                     f"{cell(rows, 'real_slide')} | "
                     f"{', '.join(str(r['best_step']) for r in rows)} | "
                     f"{np.mean([r['wall'] for r in rows]) / 60:.1f} |")
    return lines + ["", *by_group]


def groups_table(results: dict[int, list[dict]]) -> list[str]:
    """Mean per-slide instance scores by test group (modality and size), over every run."""
    import numpy as np

    per: dict[str, dict[str, list[float]]] = {}
    for rows in results.values():
        for r in rows:
            for k, group in enumerate(r["groups"]):
                for key in ("unet", "unet_native", "classical", "otsu_watershed"):
                    per.setdefault(group, {}).setdefault(key, []).append(r["per_slide"][key][k])
    lines = ["| test group | slides scored | U-Net | U-Net at own size | tuned classical "
             "| Otsu + watershed |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for group, scores in sorted(per.items()):
        lines.append(f"| {group} | {len(scores['unet'])} | "
                     + " | ".join(f"{np.mean(scores[k]):.3f}" for k in
                                  ("unet", "unet_native", "classical", "otsu_watershed")) + " |")
    return lines


if __name__ == "__main__":
    main()
