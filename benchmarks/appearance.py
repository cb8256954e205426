"""Images that look unlike the training slides: a dye's colour, dark nuclei on a bright field.

    python -m unet_course train --out run
    python benchmarks/appearance.py --model run/model.keras [--test-images 64]
                                    [--out benchmarks/results/appearance_cpu.md]

The course's synthetic slides are grey or tinted fluorescence (every channel at least a fifth
of the strongest, nuclei bright on black) or bright-field slides in their stains' colours. Two
common kinds of real image are neither: a fluorescence image saved in its dye's colour (DAPI in
blue, GFP in green: one or two empty channels) and a grey bright-field image (nuclei dark on a
light field). ``predict.predict_classes`` gives the network the first as grey
(``normalization.one_colour_as_grey``) and predicts a grey image whose polarity is in doubt
(``normalization.polarity_in_doubt``) both as it is and negated, keeping the maps the network is
more confident of. This script scores the default pipeline of ``predict`` and ``evaluate``
(size-normalised, the model's own watershed settings) with that step and with it switched off:

- the real slide of ``unet_course.real_slide`` in grey, in each of the six pure and mixed
  colours, tinted, in blue with camera noise in the two empty channels (a channel counts as
  empty while its range stays under a tenth of the widest channel's:
  ``normalization.EMPTY_CHANNEL``), and negated (dark nuclei on a bright field);
- ``--test-images`` fresh synthetic bright-field slides (256x256, seed 2027) turned grey
  (``baseline.to_grey``), and the same slides in colour;
- ``--test-images`` / 4 crowded synthetic fluorescence slides (nuclei over most of the field,
  seed 7), whose polarity is in doubt too;
- ``--test-images`` fresh synthetic test slides of both styles (seed 2026), which should not
  change.

Otsu + watershed (``unet_course.baseline``, with its own grey conversion and polarity rule)
is given beside them. Appends a Markdown table to ``--out``.
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
BRIGHT_SEED = 2027
DENSE_SEED = 7
COLOURS = {"grey": (1, 1, 1), "red": (1, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1),
           "cyan": (0, 1, 1), "magenta": (1, 0, 1), "yellow": (1, 1, 0),
           "tinted (0.3, 0.9, 0.2)": (0.3, 0.9, 0.2)}
NOISE = (0.02, 0.05)  # camera noise in the empty channels, as a fraction of the slide's range


def coloured(grey, colour, noise: float = 0.0, seed: int = 0):
    """A grey ``(H, W, 3)`` image with equal channels recoloured: each channel times
    ``colour``, plus Gaussian noise of ``noise`` times the image's range in the channels that
    ``colour`` leaves empty; the same dtype, rounded and clipped."""
    import numpy as np

    grey = np.asarray(grey)
    top = float(np.iinfo(grey.dtype).max)
    out = grey.astype(np.float64) * np.asarray(colour, np.float64)
    if noise:
        rng = np.random.default_rng(seed)
        span = float(grey.max()) - float(grey.min())
        empty = np.asarray(colour) == 0
        out[..., empty] += rng.normal(0, noise * span, out[..., empty].shape)
    return np.clip(np.round(out), 0, top).astype(grey.dtype)


def scores(model, plan: dict, images, labels) -> tuple[float, float]:
    """The default pipeline's instance score as ``predict`` runs it, and with the colour and
    polarity steps of ``predict.predict_classes`` switched off."""
    from unittest import mock

    import numpy as np

    from unet_course import rescale

    def run() -> float:
        from unet_course import evaluate
        probs, _ = rescale.predict_size_normalised(model, images, plan.first,
                                                   plan.target_area)
        return evaluate.scores(labels, probs, plan.settings)["dsb_map"]

    with_it = run()
    with mock.patch("unet_course.normalization.one_colour_as_grey",
                    lambda image, *args, **kwargs: np.asarray(image)), \
            mock.patch("unet_course.normalization.polarity_in_doubt", lambda image: False):
        without = run()
    return with_it, without


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser, test_images=64)
    args = parser.parse_args()
    check_model_and_out(parser, args)

    import dataclasses

    import keras
    import numpy as np

    from unet_course import baseline, predict, real_slide, rescale
    from unet_course.data import Difficulty, make_nuclei
    from unet_course.files import read_run_record
    from unet_course.normalization import one_colour_as_grey, polarity_in_doubt

    try:  # the record's values are checked before any work
        plan = rescale.pipeline(read_run_record(args.model), "auto")
    except ValueError as err:
        parser.error(f"--model {str(args.model)!r}: its record is not one that "
                     f"`python -m unet_course train` wrote ({err})")
    if not real_slide.is_fetched():
        parser.error("the real slide is not under data/: run `python -m unet_course.real_slide` "
                     "(or `make test`) once to fetch it")
    model = keras.saving.load_model(args.model)
    lines = [f"### `{args.model}`: a dye's colour, dark nuclei on a bright field", "",
             f"- machine: {_machine()}",
             "- the default pipeline of `predict` and `evaluate` (size-normalised); instance "
             "scores", "",
             "| test set | as `predict` runs it | colour and polarity steps off | what they did "
             "| Otsu + watershed |",
             "| --- | ---: | ---: | --- | ---: |"]

    def negated_kept(image) -> bool:
        """Whether ``predict.predict_classes`` keeps the negated maps of ``image`` (own size)."""
        image = one_colour_as_grey(image)
        if not polarity_in_doubt(image):
            return False
        as_is, flipped = predict.predict_maps(model, [image, -image.astype(np.float32)], 2)
        a, b = predict.confidence(as_is), predict.confidence(flipped)
        return b is not None and (a is None or b > a)

    def row(name: str, images, labels) -> None:
        with_it, without = scores(model, plan, images, labels)
        otsu = baseline.baseline_scores(images, labels)["otsu_watershed"]["dsb_map"]
        grey = sum(one_colour_as_grey(im) is not im for im in images)
        doubt = sum(polarity_in_doubt(one_colour_as_grey(im)) for im in images)
        negated = sum(negated_kept(im) for im in images)
        did = ", ".join(f"{n} {what}" for n, what in ((grey, "to grey"), (doubt, "in doubt"),
                                                        (negated, "negated kept")) if n)
        did = did or "nothing"
        if len(images) > 1:
            did = f"{did} (of {len(images)})"
        lines.append(f"| {name} | **{with_it:.3f}** | {without:.3f} | {did} | {otsu:.3f} |")
        print(lines[-1], file=sys.stderr, flush=True)  # progress

    image, truth = real_slide.load_real_slide()
    grey = real_slide.as_rgb(image)
    for name, colour in COLOURS.items():
        row(f"real slide, {name}", [coloured(grey, colour)], [truth])
    for n in NOISE:
        row(f"real slide, blue, noise {n:.0%} of the range in red and green",
            [coloured(grey, COLOURS["blue"], n)], [truth])
    row("real slide, negated (dark nuclei on a bright field)",
        [np.iinfo(grey.dtype).max - grey], [truth])
    bright, bright_labels = make_nuclei(args.test_images, size=256, seed=BRIGHT_SEED,
                                        style="brightfield")
    bright, bright_labels = list(bright), list(bright_labels)
    row(f"synthetic bright-field slides (seed {BRIGHT_SEED}), grey",
        [np.repeat(baseline.to_grey(im, "bright")[..., None], 3, axis=-1) for im in bright], bright_labels)
    row("the same slides in colour", bright, bright_labels)
    crowded = dataclasses.replace(Difficulty(), brightness_spread=0.3, mitotic=0.0,
                                  illumination=0.3, magnification=(1.0, 1.3))
    dense, dense_labels = make_nuclei(max(1, args.test_images // 4), size=256, seed=DENSE_SEED,
                                      style="fluorescence", nuclei=(350, 400), difficulty=crowded)
    row(f"crowded synthetic fluorescence slides (seed {DENSE_SEED})", list(dense),
        list(dense_labels))
    images, labels = make_nuclei(args.test_images, size=256, seed=TEST_SEED)
    row(f"synthetic test slides (seed {TEST_SEED}), both styles", list(images), list(labels))
    report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
