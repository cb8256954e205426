"""Nuclei of other sizes: does size normalisation find the scale? (issue 9)

    python -m unet_course train --out run
    python benchmarks/magnification.py --model run/model.keras [--zooms 0.5,1,1.5,2,3]
                                       [--test-images 16] [--out benchmarks/results/magnification_cpu.md]

Real slides come from microscopes at every magnification: in the Data Science Bowl 2018 the
median nucleus of one image covers a few dozen pixels and of another a few thousand. This
script enlarges (or shrinks) the real slide of ``unet_course.real_slide`` and ``--test-images``
fresh synthetic test slides (256x256, seed 2026) by each factor of ``--zooms`` (bilinear for
the images, nearest for the true labels), so the same nuclei appear at other sizes, and scores
on each, with the model's own watershed settings (``rescale.pipeline`` of its record):

- ``otsu_watershed``: the classical baseline (``unet_course.baseline``);
- ``own size``: the U-Net on each image as it is (``--scale 1``);
- ``one estimate``: size normalisation from the first pass alone (``rescale.LADDER`` off:
  the median area of the nuclei found at the image's own size says how to resize it);
- ``ladder`` (the default of ``predict`` and ``evaluate``): the scale at which the network is
  most confident first, then the same estimate there (``rescale.predict_size_normalised``).

Each row also gives the median scale each way chose, and the ideal scale:
``sqrt(training median area / true median area)``. Appends a Markdown table to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import _machine, add_model_arguments, check_model_and_out, report  # noqa: E402

TEST_SEED = 2026


def zoomed(image, labels, zoom: float):
    """``image`` and its true ``labels`` resized by ``zoom`` (the image bilinear, smoothed
    first when shrinking; the labels nearest, so they stay labels)."""
    import numpy as np
    from skimage.transform import resize

    if zoom == 1:
        return image, labels
    size = (round(image.shape[0] * zoom), round(image.shape[1] * zoom))
    top = np.iinfo(image.dtype).max if np.issubdtype(image.dtype, np.integer) else None
    big = resize(image.astype(np.float32), size, order=1, anti_aliasing=zoom < 1,
                 preserve_range=True)
    big = np.clip(np.round(big), 0, top).astype(image.dtype) if top else big
    lab = resize(labels, size, order=0, anti_aliasing=False, preserve_range=True)
    return big, lab.astype(np.int32)


def rows_for(model, plan: dict, native: dict, images, labels) -> dict:
    """name -> (instance score, median scale used) for the four ways on one set of images."""
    import numpy as np

    from unet_course import baseline, evaluate, predict, rescale

    first = predict.predict_classes(model, images)
    one, one_scales = rescale.predict_size_normalised(model, images, plan.first,
                                                      plan.target_area, first=first,
                                                      ladder=(1.0,))
    ladder, scales = rescale.predict_size_normalised(model, images, plan.first,
                                                     plan.target_area, first=first)
    score = baseline.baseline_scores(images, labels)["otsu_watershed"]["dsb_map"]
    return {"otsu_watershed": (score, None),
            "own size": (evaluate.scores(labels, first, native)["dsb_map"], 1.0),
            "one estimate": (evaluate.scores(labels, one, plan.settings)["dsb_map"],
                             float(np.median(one_scales))),
            "ladder": (evaluate.scores(labels, ladder, plan.settings)["dsb_map"],
                       float(np.median(scales)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser, test_images=16)
    parser.add_argument("--zooms", default="0.5,1,1.5,2,3",
                        help="comma-separated factors by which the test images are resized, "
                             "each from 0.25 to 4 (default: 0.5,1,1.5,2,3)")
    args = parser.parse_args()
    try:
        zooms = [float(z) for z in args.zooms.split(",")]
    except ValueError:
        parser.error(f"--zooms must be numbers separated by commas, got {args.zooms!r}")
    if not all(0.25 <= z <= 4 for z in zooms):
        parser.error(f"--zooms must each lie from 0.25 to 4, got {args.zooms!r}")
    check_model_and_out(parser, args)

    import keras
    import numpy as np

    from unet_course import real_slide, rescale
    from unet_course.data import make_nuclei
    from unet_course.files import read_run_record

    try:  # the record's values are checked before any work
        record = read_run_record(args.model)
        plan, native = rescale.pipeline(record, "auto"), rescale.pipeline(record, 1).settings
    except ValueError as err:
        parser.error(f"--model {str(args.model)!r}: its record is not one that "
                     f"`python -m unet_course train` wrote ({err})")
    model = keras.saving.load_model(args.model)
    images, labels = make_nuclei(args.test_images, size=256, seed=TEST_SEED)
    sets = {"synthetic": (list(images), list(labels))}
    if real_slide.is_fetched():
        image, truth = real_slide.load_real_slide()
        sets["real slide"] = ([real_slide.as_rgb(image)], [truth])
    lines = [f"### `{args.model}` at other magnifications", "",
             f"- machine: {_machine()}",
             f"- synthetic: {args.test_images} fresh 256x256 slides (seed {TEST_SEED}); "
             f"training nuclei's median area {plan.target_area:.0f} px", "",
             "| test set | zoom | ideal scale | Otsu + watershed | own size | one estimate "
             "(scale) | ladder, the default (scale) |",
             "| --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for name, (ims, labs) in sets.items():
        for zoom in zooms:
            pairs = [zoomed(np.asarray(im), np.asarray(lab), zoom) for im, lab in
                     zip(ims, labs, strict=True)]
            zi, zl = [p[0] for p in pairs], [p[1] for p in pairs]
            rows = rows_for(model, plan, native, zi, zl)
            ideal = np.sqrt(plan.target_area / rescale.median_area(zl))
            lines.append(f"| {name} | {zoom:g} | {ideal:.2f} | {rows['otsu_watershed'][0]:.3f} | "
                         f"{rows['own size'][0]:.3f} | {rows['one estimate'][0]:.3f} "
                         f"({rows['one estimate'][1]:.2f}) | **{rows['ladder'][0]:.3f}** "
                         f"({rows['ladder'][1]:.2f}) |")
            print(lines[-1], file=sys.stderr, flush=True)  # progress
    report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
