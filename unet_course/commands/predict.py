"""``unet-course predict``: segment image files into 16-bit label PNGs and overlays.

What belongs here: the command's arguments (``add``, ``run``), ``plan`` (every check of the
user's paths and images, before Keras is imported or anything is written) and
``segment_files`` (load the model, predict each image, write its two PNGs atomically). The
prediction itself is ``unet_course.predict``.

Images are read by the course's one reader (``files.read_image``): the recipe's models take
the stored values (they normalise each image by its percentiles), older models take 0-255
pixels (``files.to_uint8``). Mistakes raise ``ValueError`` / ``FileNotFoundError`` naming the
flag or the file; the command line reports them in one line with exit code 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unet_course import files
from unet_course.commands.common import (
    nonnegative_int,
    positive_int,
    probability,
    scale_factor,
    start_keras,
)
from unet_course.postprocess import METHODS


def add(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="segment images into nuclei; write 16-bit label PNGs and overlays",
        description="Segment an image, or every image file of a folder, and write the nuclei "
        "at the image's own size. A model trained by train predicts each whole image "
        "size-normalised by default (--scale); older models predict tile by tile with "
        "mirrored borders (overlap-tile). The probabilities are split into nuclei and "
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
    parser.add_argument("--instances", choices=METHODS, default="watershed",
                        help="how probabilities become nuclei (default: watershed)")
    parser.add_argument("--threshold", type=probability, default=None,
                        help="foreground threshold (default: the one chosen on validation data "
                        "in training, from metrics.json beside the model; else 0.5)")
    parser.add_argument("--min-size", type=nonnegative_int, default=None,
                        help="drop objects smaller than this many pixels (default: as chosen "
                        "in training; else 10)")
    parser.add_argument("--tile", type=positive_int, default=None,
                        help="tile side (default: the model's input size, else 512)")
    parser.add_argument("--overlap", type=nonnegative_int, default=None,
                        help="output pixels dropped at each tile edge (default: half the model's "
                        "receptive field, rounded up to its pooling grid; 0 for an unpadded "
                        "model)")
    parser.add_argument("--scale", type=scale_factor, default=None,
                        help="recipe models: 'auto' (the default for a model trained by train): "
                        "a factor per image, estimated from the image at the scale where the "
                        "network is most confident, that gives its nuclei the "
                        "training nuclei's median area (notebook 06; needs the model's "
                        "metrics.json); or a factor for every image (1 = as it is; 0.5 when its "
                        "nuclei are twice as wide as the training ones). The labels keep the "
                        "image's own size; a factor is a number from 0.1 to 10")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    jobs = plan(args.model, args.input, args.output, args.overwrite)
    start_keras()
    written = segment_files(args.model, jobs, args.output, method=args.instances,
                          threshold=args.threshold, min_size=args.min_size, tile=args.tile,
                          overlap=args.overlap, scale=args.scale, log=print)
    print(f"Wrote {written} files to {args.output}")
    return 0


@dataclass(frozen=True)
class Job:
    """One input image and the two files written for it."""

    image: Path
    labels: Path
    overlay: Path


def plan(model: Path, source: Path, output: Path, overwrite: bool = False) -> list[Job]:
    """Check the arguments and decode every input; return one ``Job`` per image.

    Refuses: a model that is not a complete ``.keras`` file; an input that is neither an
    image file nor a folder holding some (sub-folders are skipped); an output that is a file,
    that lies inside the input folder, or whose folder is not writable; an image that cannot
    be decoded to the last pixel (named); outputs that would collide or already exist
    (unless ``overwrite``).
    """
    if not model.is_file():
        raise FileNotFoundError(f"--model {str(model)!r}: no such .keras file")
    files.check_keras_file(model, "--model")
    inputs = _inputs(source)
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {str(output)!r} is a file; expected a folder")
    if source.is_dir() and files.inside(output, source):
        raise ValueError(f"--output {str(output)!r} lies inside --input {str(source)!r}: its "
                         "label PNGs would be read as images next time; choose another folder")
    files.check_writable(output, "--output")
    for path in inputs:
        pixels = files.read_image(path)  # every pixel decoded: a truncated file stops us here
        if np.issubdtype(pixels.dtype, np.floating) and not np.isfinite(pixels).all():
            bad = int((~np.isfinite(pixels)).any(axis=-1).sum())
            raise ValueError(f"{str(path)!r}: {bad} pixels are NaN or infinite; expected "
                             "finite values (a network cannot predict from them)")
    jobs = [Job(p, output / f"{p.stem}_labels.png", output / f"{p.stem}_overlay.png")
            for p in inputs]
    stems = [p.stem for p in inputs]
    if len(set(stems)) < len(stems):
        raise ValueError("--input holds images with the same name and different suffixes; "
                         "their outputs would collide")
    existing = [str(out) for job in jobs for out in (job.labels, job.overlay) if out.exists()]
    if existing and not overwrite:
        raise ValueError(f"{existing[0]!r} exists ({len(existing)} output files do); "
                         "pass --overwrite to replace them")
    return jobs


def _inputs(source: Path) -> list[Path]:
    suffixes = "/".join(files.IMAGE_SUFFIXES)
    if source.is_dir():
        inputs = sorted(p for p in source.iterdir()
                        if p.suffix.lower() in files.IMAGE_SUFFIXES and p.is_file())
        if not inputs:
            raise ValueError(f"--input {str(source)!r} holds no {suffixes} files")
        return inputs
    if source.is_file() and source.suffix.lower() in files.IMAGE_SUFFIXES:
        return [source]
    raise ValueError(f"--input {str(source)!r}: expected an image file ({suffixes}) or a "
                     "folder of them")


def segment_files(model_path: Path, jobs: list[Job], output: Path, *, method: str = "watershed",
        threshold: float | None = None, min_size: int | None = None, tile: int | None = None,
        overlap: int | None = None, scale: float | str | None = None,
        log: Callable[[str], None] = print) -> int:
    """Predict every job's image and write its label PNG and overlay; return the file count.

    The model's training record is read and checked first (``rescale.pipeline``), then the
    model is loaded. The output folder is made if missing, and removed again if nothing
    could be written.
    """
    from unet_course import normalization, recipe

    record, why = _read_record(model_path)
    try:
        way = _recipe_way(record, scale, why)
    except ValueError as error:
        raise ValueError(f"--model {str(model_path)!r}: {error}") from None
    model = recipe.load_model(model_path)
    if model.input_shape[-1] not in (1, 3):
        raise ValueError(f"--model takes {model.input_shape[-1]}-channel images; expected 1 or 3")
    if any(isinstance(layer, normalization.PercentileNormalization) for layer in model.layers):
        if why:
            log(f"note: {why}; so each image is predicted "
                + ("at its own size" if way["scale"] == 1 else f"at scale {way['scale']}")
                + " with the default settings (recipe.DEFAULT_POSTPROCESSING)")
        segment = _recipe_segmenter(model, way, method, threshold, min_size)
        appearance = normalization.appearance_note
    elif scale not in (None, 1):
        raise ValueError(f"--scale {scale}: only the recipe's models, which normalise each "
                         "image themselves, are predicted at another scale; this model is "
                         "predicted tile by tile at 0-255, at its own size")
    else:
        segment = _tiled_segmenter(model, method, threshold, min_size, tile, overlap)

        def appearance(image):
            return normalization.appearance_note(image, polarity=False)
    made = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    try:
        for job in jobs:
            image = files.read_image(job.image)
            labels, shown, factor = segment(image)
            _write(job, labels, shown)
            at = "" if factor in (None, 1) else f" (predicted at scale {factor:.2f})"
            count = f"{labels.max()} nucle{'us' if labels.max() == 1 else 'i'}"
            note = appearance(image)
            log(f"{job.image.name}: {count}, {labels.shape[1]}x{labels.shape[0]}"
                f"{at} -> {job.labels.name}, {job.overlay.name}" + (f" ({note})" if note else ""))
    finally:
        if made and not any(output.iterdir()):
            output.rmdir()
    return 2 * len(jobs)


def _read_record(model_path: Path) -> tuple[dict, str | None]:
    """The model's own training record (``{}`` when there is none or it is not the model's)
    and, when it cannot be used, why."""
    try:
        record = files.read_run_record(model_path)
    except ValueError as error:
        return {}, f"the training record was not used: {error}"
    if record is None:
        return {}, f"no training record ({files.RECORD}) beside {str(model_path)!r}"
    return record, None


def _recipe_way(record: dict, scale, why: str | None) -> dict:
    """``rescale.pipeline`` for a recipe model, with the reason when the record was dropped."""
    from unet_course import rescale

    try:
        return rescale.pipeline(record, scale)
    except ValueError as error:
        raise ValueError(f"{error}" + (f" ({why})" if why else "")) from None


def _recipe_segmenter(model, way: dict, method, threshold, min_size):
    """A model that normalises its own input: stored values in, whole images at once, each
    size-normalised or resized as ``way`` (``rescale.pipeline``) says, split with the
    post-processing chosen in training for that way."""
    from unet_course import rescale
    from unet_course.postprocess import label_instances

    post = way["settings"]
    if threshold:
        post["threshold"] = threshold
    if min_size is not None:
        post["min_size"] = min_size

    def segment(image):
        (probs,), (factor,) = rescale.predict_pipeline(model, [image], way)
        return label_instances(probs, method=method, **post), files.to_uint8(image), factor

    return segment


def _tiled_segmenter(model, method, threshold, min_size, tile, overlap):
    """An older model (``Rescaling(1/255)``): 0-255 pixels in, overlap-tile prediction; an
    image saved in its dye's colour (``normalization.one_colour_as_grey``) goes in as its
    channel with the widest range, three times, so its values keep their scale. (No polarity
    step: that needs the confidence of a three-class recipe model.)"""
    from unet_course.normalization import one_colour_as_grey
    from unet_course.predict import predict_instances, tile_plan

    tile = tile or model.input_shape[1]
    tile_plan(model, tile, overlap)  # a bad tile fails here, before any file
    grey = model.input_shape[-1] == 1

    def segment(image):
        if one_colour_as_grey(image) is not image:
            widest = np.argmax(np.ptp(image.reshape(-1, 3), axis=0))
            image = np.repeat(image[..., widest:widest + 1], 3, axis=-1)
        pixels = files.to_uint8(image)
        pixels = files.to_grey(pixels) if grey else pixels
        labels, _ = predict_instances(
            model, pixels, method, threshold or 0.5, tile=tile, overlap=overlap,
            min_size=10 if min_size is None else min_size)
        return labels, pixels if not grey else pixels[..., 0], None

    return segment


def _write(job: Job, labels: np.ndarray, shown: np.ndarray) -> None:
    """The 16-bit label PNG and the overlay, each written atomically."""
    from PIL import Image

    from unet_course.overlay import overlay_instances

    if labels.max() > np.iinfo(np.uint16).max:
        raise ValueError(f"{str(job.image)!r}: {labels.max()} nuclei do not fit a 16-bit PNG")
    with files.atomic_path(job.labels) as tmp:
        Image.fromarray(labels.astype(np.uint16)).save(tmp, format="PNG")
    with files.atomic_path(job.overlay) as tmp:
        Image.fromarray(overlay_instances(shown, labels)).save(tmp, format="PNG")
