"""``unet-course predict``: segment image files into 16-bit label PNGs and overlays.

What belongs here: the command's arguments (``add``, ``run``), ``plan`` (every check of the
user's paths and images, before Keras is imported or anything is written) and
``segment_files`` (load the model, predict each image on its own, write its two PNGs
atomically, count what was done, skipped and failed). The prediction itself is
``unet_course.predict``. Notes and warnings go to stderr, one line per image to stdout.

Images are read by the course's one reader (``files.read_image``): the recipe's models take
the stored values (they normalise each image by its percentiles), older models take 0-255
pixels (``files.to_uint8``). Mistakes raise ``ValueError`` / ``FileNotFoundError`` naming the
flag or the file; the command line reports them in one line with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unet_course import files, interrupts
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
        "lie inside the folder of any input. In a folder, predict's own outputs "
        "(*_labels.png, *_overlay.png) and files that look like label maps are skipped, "
        "with a note. A blank or tiny image gets a note and an empty label map; an image "
        "that fails is named and the others go on (exit code 1 at the end).",
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
                        help="older (tiled) models only: tile side (default: the model's input "
                        "size, else 512); refused for the recipe's models, which take each "
                        "whole image")
    parser.add_argument("--overlap", type=nonnegative_int, default=None,
                        help="older (tiled) models only: output pixels dropped at each tile "
                        "edge (default: half the model's receptive field, rounded up to its "
                        "pooling grid; 0 for an unpadded model)")
    parser.add_argument("--channel", type=nonnegative_int, default=None,
                        help="predict this channel (0-based) of every image, as grey: the "
                        "nuclear channel of a multi-channel image (an image with 2 or 4 "
                        "channels, none declared alpha, is refused without it)")
    parser.add_argument("--scale", type=scale_factor, default=None,
                        help="recipe models: 'auto' (the default for a model trained by train): "
                        "a factor per image, estimated from the image at the scale where the "
                        "network is most confident, that gives its nuclei the "
                        "training nuclei's median area (notebook 07; needs the model's "
                        "metrics.json); or a factor for every image (1 = as it is; 0.5 when its "
                        "nuclei are twice as wide as the training ones). The labels keep the "
                        "image's own size; a factor is a number from 0.1 to 10")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check everything (``plan``), then segment each image; exit code 1 if any failed."""
    notes: list[str] = []  # said once every check has passed: a mistake stays one line
    jobs = plan(args.model, args.input, args.output, args.overwrite, args.channel,
                warn=notes.append)
    for note in notes:
        _warn(note)
    interrupts.check()
    start_keras()
    interrupts.check()
    tally = segment_files(args.model, jobs, args.output, method=args.instances,
                          threshold=args.threshold, min_size=args.min_size, tile=args.tile,
                          overlap=args.overlap, scale=args.scale, channel=args.channel,
                          log=print, warn=_warn)
    print(tally.summary(args.output))
    return 1 if tally.failed else 0


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


@dataclass(frozen=True)
class Job:
    """One input image and the two files written for it."""

    image: Path
    labels: Path
    overlay: Path


OWN_OUTPUTS = ("_labels", "_overlay")  # the stems' endings of what predict writes


def plan(model: Path, source: Path, output: Path, overwrite: bool = False,
         channel: int | None = None, warn: Callable[[str], None] = _warn) -> list[Job]:
    """Check the arguments and decode every input; return one ``Job`` per image.

    Refuses: a model that is not a complete ``.keras`` file; an input that is neither an
    image file nor a folder holding some (sub-folders are skipped); an output that is a file,
    that lies inside the folder of any input, or whose folder is not writable; an image that
    cannot be decoded to the last pixel, or whose channels are ambiguous (named); outputs that
    would collide or already exist (unless ``overwrite``). In a folder, predict's own outputs
    and files that look like label maps (``label_maps.looks_like_label_map``) are skipped
    with a note (``warn``); a label map named as ``source`` itself gets the note only.
    """
    if not model.is_file():
        raise FileNotFoundError(f"--model {str(model)!r}: no such .keras file")
    files.check_keras_file(model, "--model")
    inputs = _inputs(source, warn)
    _check_output(output, source, inputs)
    inputs = _decodable(inputs, channel, skip_labels=source.is_dir(), warn=warn)
    if not inputs:
        raise ValueError(f"--input {str(source)!r} holds no microscope images (only label "
                         "maps or masks, skipped)")
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


def _check_output(output: Path, source: Path, inputs: list[Path]) -> None:
    """Refuse an ``output`` that is a file, the folder of an input image or lies inside an
    input folder (where its PNGs would be read as images next time), or cannot be written."""
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {str(output)!r} is a file; expected a folder")
    if source.is_dir() and files.inside(output, source):
        raise ValueError(f"--output {str(output)!r} lies inside --input {str(source)!r}: its "
                         "label PNGs would be read as images next time; choose another folder")
    beside = [p for p in inputs if p.parent.resolve() == output.resolve()]
    if beside:
        raise ValueError(f"--output {str(output)!r} is the folder of --input "
                         f"{str(beside[0])!r}: its label PNGs would be read as images next "
                         "time; choose another folder")
    files.check_writable(output, "--output")


def _inputs(source: Path, warn: Callable[[str], None]) -> list[Path]:
    """The image files of ``source`` (itself, or a folder's, without predict's own outputs)."""
    suffixes = "/".join(files.IMAGE_SUFFIXES)
    if source.is_dir():
        found = sorted(p for p in source.iterdir()
                       if p.suffix.lower() in files.IMAGE_SUFFIXES and p.is_file())
        inputs = [p for p in found if not p.stem.endswith(OWN_OUTPUTS)]
        if len(inputs) < len(found):
            skipped = len(found) - len(inputs)
            warn(f"note: skipped {skipped} file{'s' if skipped > 1 else ''} of {str(source)!r} "
                 "named like predict's own outputs (*_labels.png, *_overlay.png)")
        if not inputs:
            raise ValueError(f"--input {str(source)!r} holds no {suffixes} files"
                             + (" besides predict's own outputs" if found else ""))
        return inputs
    if source.is_file() and source.suffix.lower() in files.IMAGE_SUFFIXES:
        return [source]
    raise ValueError(f"--input {str(source)!r}: expected an image file ({suffixes}) or a "
                     "folder of them")


def _decodable(inputs: list[Path], channel: int | None, skip_labels: bool,
               warn: Callable[[str], None]) -> list[Path]:
    """Decode every input to its last pixel (a truncated file stops us here, named); drop
    the label maps of a folder with a note."""
    from unet_course.label_maps import looks_like_label_map

    kept = []
    for path in inputs:
        interrupts.check()
        pixels = files.read_image(path, channel)
        if np.issubdtype(pixels.dtype, np.floating) and not np.isfinite(pixels).all():
            bad = int((~np.isfinite(pixels)).any(axis=-1).sum())
            raise ValueError(f"{str(path)!r}: {bad} pixels are NaN or infinite; expected "
                             "finite values (a network cannot predict from them)")
        if looks_like_label_map(pixels):
            warn(f"note: {str(path)!r} looks like a label map or a mask (flat objects of whole "
                 "numbers on 0), not a microscope image: "
                 + ("skipped" if skip_labels else "predicted anyway"))
            if skip_labels:
                continue
        kept.append(path)
    return kept


@dataclass
class Tally:
    """What ``segment_files`` did with each image: segmented, skipped (blank or tiny: an
    empty label map written) or failed (nothing written for it)."""

    total: int
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def summary(self, output: Path) -> str:
        written = len(self.done) + len(self.skipped)
        return (f"{self.total} images: {len(self.done)} segmented, {len(self.skipped)} blank "
                f"or tiny (empty label maps), {len(self.failed)} failed; wrote "
                f"{2 * written} files to {output}")

    def interrupted(self, output: Path) -> str:
        written = len(self.done) + len(self.skipped)
        return (f"kept the label maps and overlays of {written} of {self.total} images in "
                f"{str(output)!r}, each pair complete; the other {self.total - written} were "
                "not predicted (run again with --overwrite to predict them all)")


MIN_SIDE = 8  # an image with a shorter side holds no whole nucleus worth segmenting


def segment_files(model_path: Path, jobs: list[Job], output: Path, *, method: str = "watershed",
        threshold: float | None = None, min_size: int | None = None, tile: int | None = None,
        overlap: int | None = None, scale: float | str | None = None, channel: int | None = None,
        log: Callable[[str], None] = print, warn: Callable[[str], None] = _warn) -> Tally:
    """Predict every job's image on its own and write its label PNG and overlay.

    The model's training record is read and checked first (``rescale.pipeline``), then the
    model is loaded. A blank (one value) or tiny image gets a note and an empty label map;
    an image whose prediction fails is named (``warn``) and the next one goes on; a full
    disk or a read-only folder stops the run. Ctrl-C is honoured between images, raised as
    ``KeyboardInterrupt`` saying what was kept. The output folder is made if missing, and
    removed again if nothing could be written. Returns the ``Tally``.
    """
    segment, appearance = _segmenter(model_path, method, threshold, min_size, tile, overlap,
                                     scale, warn)
    tally = Tally(len(jobs))
    made = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    try:
        for job in jobs:
            interrupts.check()
            _segment_one(job, files.read_image(job.image, channel), segment, appearance,
                         tally, log, warn)
        interrupts.check()
    except KeyboardInterrupt:
        raise KeyboardInterrupt(tally.interrupted(output)) from None
    finally:
        if made and not any(output.iterdir()):
            output.rmdir()
    return tally


def _segment_one(job: Job, image: np.ndarray, segment, appearance, tally: Tally,
                 log: Callable[[str], None], warn: Callable[[str], None]) -> None:
    """One image: an empty label map for a blank or tiny one, else ``segment``'s nuclei;
    its two PNGs written, or the failure named; counted in ``tally``."""
    name = job.image.name
    empty = _no_picture(image)
    if empty:
        _write(job, np.zeros(image.shape[:2], np.int32), files.to_uint8(image))
        warn(f"note: {name}: {empty}: no nuclei to find; an empty label map written")
        tally.skipped.append(name)
        return
    try:
        labels, shown, factor = segment(image)
        _write(job, labels, shown)
    except OSError:  # a full disk or a read-only folder: every next image would fail too
        raise
    except Exception as err:  # one image's failure does not stop the others
        warn(f"{name}: failed, nothing written for it ({type(err).__name__}: "
             f"{' '.join(str(err).split())})")
        tally.failed.append(name)
        return
    tally.done.append(name)
    at = "" if factor in (None, 1) else f" (predicted at scale {factor:.2f})"
    count = f"{labels.max()} nucle{'us' if labels.max() == 1 else 'i'}"
    note = appearance(image)
    log(f"{name}: {count}, {labels.shape[1]}x{labels.shape[0]}{at} -> {job.labels.name}, "
        f"{job.overlay.name}" + (f" ({note})" if note else ""))


def _no_picture(image: np.ndarray) -> str:
    """Why ``image`` holds nothing to segment (tiny, or every pixel one value), or ""."""
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        return f"{w}x{h} pixels, smaller than {MIN_SIDE} on a side"
    if image.min() == image.max():
        return f"blank (every pixel {image.flat[0]})"
    return ""


def _segmenter(model_path: Path, method, threshold, min_size, tile, overlap, scale, warn):
    """``(segment, appearance)`` for the model at ``model_path``: the recipe's whole-image
    way or the older models' tiles; every option checked before any image is predicted."""
    import keras

    from unet_course import normalization

    record, why = _read_record(model_path)
    try:
        way = _recipe_way(record, scale, why)
    except ValueError as error:
        raise ValueError(f"--model {str(model_path)!r}: {error}") from None
    model = keras.saving.load_model(model_path)
    if model.input_shape[-1] not in (1, 3):
        raise ValueError(f"--model takes {model.input_shape[-1]}-channel images; expected 1 or 3")
    if any(isinstance(layer, normalization.PercentileNormalization) for layer in model.layers):
        if tile is not None or overlap is not None:
            flag = "--tile" if tile is not None else "--overlap"
            raise ValueError(f"{flag}: the recipe's models predict each whole image at once "
                             "(not tile by tile), so it would do nothing; drop it")
        if lost := lost_to_classical(record):
            warn(lost)
        if why:
            warn(f"note: {why}; so each image is predicted "
                 + ("at its own size" if way["scale"] == 1 else f"at scale {way['scale']}")
                 + " with the default settings (postprocess.DEFAULT_POSTPROCESSING)")
        return (_recipe_segmenter(model, way, method, threshold, min_size),
                normalization.appearance_note)
    if scale not in (None, 1):
        raise ValueError(f"--scale {scale}: only the recipe's models, which normalise each "
                         "image themselves, are predicted at another scale; this model is "
                         "predicted tile by tile at 0-255, at its own size")

    def appearance(image):
        return normalization.appearance_note(image, polarity=False)

    return _tiled_segmenter(model, method, threshold, min_size, tile, overlap), appearance


def lost_to_classical(record: dict) -> str | None:
    """A warning when the training record says the model did not beat the classical pipeline
    on its validation slides (``metrics.json``: ``val_dsb_map``, ``val_classical``), else None."""
    classical = (record.get("val_classical") or {}).get("dsb_map")
    unet = record.get("val_dsb_map")
    if not isinstance(classical, int | float) or not isinstance(unet, int | float):
        return None
    if unet > classical:
        return None
    return (f"warning: this model did not beat the classical pipeline on its validation slides "
            f"(instance score {unet:.3f} against {classical:.3f}, metrics.json): check its "
            "labels before you trust them, or train it longer (train --steps)")


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
    from unet_course import baseline
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
        pixels = np.rint(baseline.to_grey(pixels, "bright"))[..., None].astype(np.uint8) if grey else pixels
        labels, _ = predict_instances(
            model, pixels, method, threshold or 0.5, tile=tile, overlap=overlap,
            min_size=10 if min_size is None else min_size)
        return labels, pixels if not grey else pixels[..., 0], None

    return segment


def _write(job: Job, labels: np.ndarray, shown: np.ndarray) -> None:
    """The 16-bit label PNG and the overlay, each written atomically and renamed into place
    together: a failure of either (a full disk) leaves neither."""
    from PIL import Image

    from unet_course.overlay import overlay_instances

    if labels.max() > np.iinfo(np.uint16).max:
        raise ValueError(f"{str(job.image)!r}: {labels.max()} nuclei do not fit a 16-bit PNG")
    with files.atomic_path(job.labels) as labels_tmp, files.atomic_path(job.overlay) as overlay_tmp:
        Image.fromarray(labels.astype(np.uint16)).save(labels_tmp, format="PNG")
        Image.fromarray(overlay_instances(shown, labels)).save(overlay_tmp, format="PNG")
