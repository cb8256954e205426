"""``unet-course predict``: ``plan`` checks the paths and reads every input before Keras
starts; ``segment_files`` predicts each image (``unet_course.predict``, ``rescale``) into a
16-bit label PNG and an overlay, written atomically. Results on stdout, notes on stderr."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np

from unet_course import files, interrupts
from unet_course.commands import common
from unet_course.commands.common import add_options, lost_to_classical, opens

OWN_OUTPUTS = ("_labels", "_overlay")  # the stems' endings of what predict writes
MIN_SIDE = 8  # an image with a shorter side holds no whole nucleus worth segmenting
LARGE = 2**20  # pixels from which an image gets a line as its prediction starts
BYTES_PER_PIXEL = 700  # rough peak memory of predicting one pixel (recipe model, --scale auto)
MOSTLY = 0.8  # a label map covering more of its image is almost surely wrong (a warning)


def add(subparsers) -> None:
    parser = common.add_command(
        subparsers, run, "predict", "segment images into nuclei; write 16-bit label PNGs and "
        "overlays", "Segment an image, or each image of a folder, into OUTPUT/<name>_labels.png "
        "(16-bit: 0 = background, 1..n = nuclei) and OUTPUT/<name>_overlay.png. Every input "
        "is read before anything is written: unreadable ones are all named in one error (exit "
        "code 2). An image whose prediction fails is named and the others go on (exit code 1).", {
        "--model": "a .keras file (RUN/model.keras from train)",
        "--input": "an image file or a folder",
        "--output": "output folder (made if missing; not the folder of an input)",
        "--instances": "how probabilities become nuclei (default: watershed)",
        "--threshold": "foreground threshold (default: as chosen in training, else 0.5)",
        "--min-size": "drop smaller objects, in pixels (default: as chosen in training, else 10)",
        "--tile": "older (tiled) models only: tile side (default: the model's input size)",
        "--overlap": "older (tiled) models only: pixels dropped at each tile edge",
        "--channel": "predict this channel (0-based) of every image as grey",
        "--scale": "models from train: 'auto' (default) resizes each image so its nuclei look "
                   "like the training ones; a number from 0.1 to 10 resizes every image by it "
                   "(1 = as it is); the labels keep the image's size",
    })
    add_options(parser.add_mutually_exclusive_group(), {
        "--overwrite": "replace existing output files",
        "--resume": "keep the images whose label PNG and overlay both exist and open, "
                    "whatever settings made them; predict the others",
    })


def run(args: argparse.Namespace) -> int:
    """Check everything (``plan``), then segment each image; exit code 1 if any failed."""
    notes: list[str] = []  # said once every check has passed: a mistake stays one line
    jobs, kept = plan(args, notes.append)
    for note in notes:
        _warn(note)
    tally = segment_files(args, jobs, kept) if jobs else Counter(kept=kept)
    print(f"{len(jobs) + kept} images: {tally['segmented']} segmented, {tally['blank']} blank "
          f"or tiny (empty label maps), {tally['failed']} failed"
          + (f", {kept} kept from before (--resume)" if kept else "")
          + f"; wrote {2 * (tally['segmented'] + tally['blank'])} files to {args.output}")
    return 1 if tally["failed"] else 0


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


class Job(NamedTuple):
    """One input image and the two files written for it."""

    image: Path
    labels: Path
    overlay: Path


def plan(args: argparse.Namespace, warn=_warn) -> tuple[list[Job], int]:
    """The images to predict, and how many ``--resume`` keeps (both outputs there); raises
    ``ValueError`` / ``FileNotFoundError`` naming the flag or file for a bad model, input,
    output (existing ones need ``--overwrite`` or ``--resume``) or image."""
    source, output = args.input, args.output
    common.check_model_path(args.model)
    inputs = _inputs(source, warn)
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {str(output)!r} is a file; expected a folder")
    folder = source.is_dir()
    if files.inside(output, source) if folder else output.resolve() == source.parent.resolve():
        raise ValueError(f"--output {str(output)!r} "
                         + ("lies inside" if folder else "is the folder of")
                         + f" --input {str(source)!r}: its label PNGs would be read as images "
                         "next time; choose another folder")
    files.check_writable(output, "--output")
    stems = Counter(p.stem for p in inputs)
    if same := [p.name for p in inputs if stems[p.stem] > 1]:
        raise ValueError(f"--input holds images with the same name and different suffixes "
                         f"({', '.join(same)}): their outputs would collide; rename or move one")
    jobs = [Job(p, output / f"{p.stem}_labels.png", output / f"{p.stem}_overlay.png")
            for p in inputs]
    done = {job for job in jobs if args.resume and opens(job.labels) and opens(job.overlay)}
    existing = [str(out) for job in jobs for out in (job.labels, job.overlay)
                if job not in done and out.exists()]
    if existing and not (args.overwrite or args.resume):
        raise ValueError(f"{existing[0]!r} exists ({len(existing)} output files do); pass "
                         "--resume to keep finished images, or --overwrite to replace them")
    jobs, bad = [job for job in jobs if job not in done], []  # every image read, bad or not
    jobs = [job for job in jobs if _readable(job.image, args.channel, folder, warn, bad.append)]
    if bad:
        raise ValueError(bad[0] if len(bad) == 1 else f"{len(bad)} images of --input cannot "
                         "be predicted (move them away or fix them): " + "; ".join(bad))
    if not jobs and not done:
        raise ValueError(f"--input {str(source)!r} holds no microscope images (only label "
                         "maps or masks, skipped)")
    return jobs, len(done)


def _inputs(source: Path, warn) -> list[Path]:
    """The image files of ``source``: itself, or a folder's files without predict's outputs."""
    suffixes = "/".join(files.IMAGE_SUFFIXES)
    if source.is_file() and source.suffix.lower() in files.IMAGE_SUFFIXES:
        return [source]
    if not source.is_dir():
        gone = "" if source.exists() else " does not exist"
        raise ValueError(f"--input {str(source)!r}{gone}: expected an image file ({suffixes}) "
                         "or a folder of them")
    found = sorted(p for p in source.iterdir()
                   if p.suffix.lower() in files.IMAGE_SUFFIXES and p.is_file())
    inputs = [p for p in found if not p.stem.endswith(OWN_OUTPUTS)]
    if skipped := len(found) - len(inputs):
        warn(f"note: skipped {skipped} file{'s' if skipped > 1 else ''} of {str(source)!r} "
             "named like predict's own outputs (*_labels.png, *_overlay.png)")
    if not inputs:
        slide = next((p for p in sorted(source.iterdir()) if (p / "images").is_dir()), None)
        raise ValueError(f"--input {str(source)!r} holds no {suffixes} files"
                         + (" besides predict's own outputs" if found else "")
                         + (f" (a DSB folder? its images lie in {str(slide / 'images')!r})"
                            if slide else ""))
    return inputs


def _readable(path: Path, channel: int | None, in_folder: bool, warn, refuse) -> bool:
    """Check ``path``'s size, decode it; False for a label map in a folder (a note), or for an
    image that cannot be predicted (``refuse(why)``)."""
    from unet_course.label_maps import looks_like_label_map

    interrupts.check()
    try:
        _check_size(path)
        pixels = files.read_image(path, channel)
        if np.issubdtype(pixels.dtype, np.floating) and not np.isfinite(pixels).all():
            bad = int((~np.isfinite(pixels)).any(axis=-1).sum())
            raise ValueError(f"{str(path)!r}: {bad} pixels are NaN or infinite; expected "
                             "finite values (a network cannot predict from them)")
    except ValueError as error:
        refuse(" ".join(str(error).split()))
        return False
    if looks_like_label_map(pixels):
        warn(f"note: {str(path)!r} looks like a label map or a mask (flat objects of whole "
             "numbers on 0), not a microscope image: "
             + ("skipped" if in_folder else "predicted anyway"))
        return not in_folder
    return True


def _check_size(path: Path) -> None:
    """Refuse an image whose size (its header, not decoded) needs more than the memory."""
    import tifffile
    from PIL import Image

    memory = common.physical_memory()
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                w, h = tif.pages[0].imagewidth, tif.pages[0].imagelength
        else:
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # the size alone
            try:
                with Image.open(path) as image:
                    w, h = image.size
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except Exception:  # noqa: BLE001 (not an image: decoding it names the problem)
        return
    if memory and w * h * BYTES_PER_PIXEL > memory:
        raise ValueError(f"{str(path)!r} is {w}x{h} pixels: predicting it needs about "
                         f"{w * h * BYTES_PER_PIXEL / 2**30:.0f} GiB of memory, more than this "
                         f"machine's {memory / 2**30:.0f} GiB; cut it into smaller images "
                         "(4096x4096 or less) and predict their folder")


def segment_files(args: argparse.Namespace, jobs: list[Job], kept: int = 0) -> Counter:
    """Start Keras, load the model, predict and write each job's image, counted by outcome
    (and ``kept``). An ``OSError`` (a full disk) stops the run, Ctrl-C too between images
    (``KeyboardInterrupt`` saying what was kept); an output folder made and left empty goes."""
    interrupts.check()
    common.start_keras()
    interrupts.check()
    segment, appearance = _segmenter(args)
    output, tally = args.output, Counter(kept=kept)
    made = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    try:
        for number, job in enumerate(jobs, 1):
            interrupts.check()
            tally[_segment_one(job, args.channel, segment, appearance,
                               f"{number} of {len(jobs)}")] += 1
        interrupts.check()
    except KeyboardInterrupt:
        whole, total = tally.total() - tally["failed"], len(jobs) + kept
        raise KeyboardInterrupt(
            f"kept the label maps and overlays of {whole} of {total} images in "
            f"{str(output)!r}, each pair complete; the other {total - whole} were not "
            "predicted (run again with "
            + ("--overwrite: --resume would keep outputs made with other settings" if
               args.overwrite else "--resume to predict them") + ")") from None
    finally:
        if made and not any(output.iterdir()):
            output.rmdir()
    return tally


def _segment_one(job: Job, channel, segment, appearance, number: str) -> str:
    """One image: an empty label map for a blank or tiny one, else ``segment``'s nuclei; its
    two PNGs written, or the failure named. Returns "segmented", "blank" or "failed"."""
    name = job.image.name
    try:
        image = files.read_image(job.image, channel)
        (h, w), factor = image.shape[:2], None
        if empty := _no_picture(image):
            labels, shown = np.zeros((h, w), np.int32), files.to_uint8(image)
        else:
            if h * w >= LARGE:
                _warn(f"{name} ({number}): {w}x{h} pixels, predicting; it takes a while")
            labels, shown, factor = segment(image)
        _write(job, labels, shown)
    except OSError:  # a full disk or a read-only folder: every next image would fail too
        raise
    except Exception as err:  # one image's failure does not stop the others
        why = ("out of memory: cut it into smaller images" if isinstance(err, MemoryError)
               else f"{type(err).__name__}: {' '.join(str(err).split())}")
        _warn(f"{name}: failed, nothing written for it ({why})")
        return "failed"
    if empty:
        _warn(f"note: {name}: {empty}: no nuclei to find; an empty label map written")
        return "blank"
    if (share := np.count_nonzero(labels) / labels.size) > MOSTLY:
        _warn(f"warning: {name}: {share:.0%} of the image was labelled as nuclei: check the "
              "overlay; if nuclei and background are swapped, invert the image (or give the "
              "nuclear channel with --channel), or try --threshold")
    at = "" if factor in (None, 1) else f" (predicted at scale {factor:.2f})"
    note = appearance(image)
    print(f"{name}: {labels.max()} nucle{'us' if labels.max() == 1 else 'i'}, {w}x{h}{at} -> "
          f"{job.labels.name}, {job.overlay.name}" + (f" ({note})" if note else ""))
    return "segmented"


def _no_picture(image: np.ndarray) -> str:
    """Why ``image`` holds nothing to segment (tiny, or every pixel one value), or ""."""
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        return f"{w}x{h} pixels, smaller than {MIN_SIDE} on a side"
    if image.min() == image.max():
        return f"blank (every pixel {image.flat[0]})"
    return ""


def _segmenter(args: argparse.Namespace):
    """``(segment, appearance)`` for ``--model``: the recipe's whole-image way or the older
    models' tiles; every option checked before any image is predicted."""
    import keras

    from unet_course import normalization, rescale

    flag = f"--model {str(args.model)!r}"
    record, why = common.run_record(args.model)
    try:
        way = rescale.pipeline(record, args.scale)
    except ValueError as error:
        raise ValueError(f"{flag}: {error}" + (f" ({why})" if why else "")) from None
    model = keras.saving.load_model(args.model)
    common.check_model(model, flag)
    if any(isinstance(layer, normalization.PercentileNormalization) for layer in model.layers):
        if args.tile is not None or args.overlap is not None:
            raise ValueError(f"{'--tile' if args.tile is not None else '--overlap'}: the "
                             "recipe's models predict whole images, not tiles; drop it")
        if lost := lost_to_classical(record):
            _warn(lost)
        if why:
            _warn(f"note: {why}; so each image is predicted "
                  + ("at its own size" if way.scale == 1 else f"at scale {way.scale}")
                  + " with the default settings (postprocess.DEFAULT_POSTPROCESSING)")
        return _recipe_segmenter(model, way, args), normalization.appearance_note
    if args.scale not in (None, 1):
        raise ValueError(f"--scale {args.scale}: only the recipe's models are predicted at "
                         "another scale; this one is predicted tile by tile at its own size")
    threshold = args.threshold or record.get("best_threshold", 0.5)  # as evaluate scores it
    if not (isinstance(threshold, float | int) and 0 < threshold < 1):
        raise ValueError(f"{flag}: metrics.json: best_threshold must be a number in (0, 1), "
                         f"got {threshold!r}")
    segment = _tiled_segmenter(model, args, threshold)
    if not any(isinstance(layer, keras.layers.Rescaling) for layer in model.layers):
        _warn(f"note: {flag} is not a course model (no PercentileNormalization or Rescaling "
              "layer): it is given 0-255 pixels tile by tile and its output read as nucleus "
              "probabilities; check its labels")
    return segment, lambda image: normalization.appearance_note(image, polarity=False)


def _recipe_segmenter(model, way, args: argparse.Namespace):
    """Stored values in, each whole image predicted as ``way`` says (``rescale.pipeline``)."""
    from unet_course import rescale
    from unet_course.postprocess import label_instances

    given = dict(threshold=args.threshold, min_size=args.min_size)
    post = {**way.settings, **{k: v for k, v in given.items() if v is not None}}

    def segment(image):
        (probs,), (factor,) = rescale.predict_pipeline(model, [image], way)
        return label_instances(probs, method=args.instances, **post), files.to_uint8(image), factor

    return segment


def _tiled_segmenter(model, args: argparse.Namespace, threshold: float):
    """0-255 pixels in, overlap tiles; an image in one dye's colour goes in as its widest
    channel three times (``files.one_colour_as_grey``)."""
    from unet_course import baseline
    from unet_course.predict import predict_instances, tile_plan

    tile = args.tile or model.input_shape[1]
    try:
        tile_plan(model, tile, args.overlap)  # a bad tile fails here, before any file
    except ValueError as error:
        why = str(error).replace(f"model {model.name!r}", "it").replace(f", got tile={tile}", "")
        raise ValueError(f"--tile {tile or '(default)'}, --model {str(args.model)!r}: "
                         f"{why.replace('this model', 'it')}") from None
    grey = model.input_shape[-1] == 1

    def segment(image):
        if files.one_colour_as_grey(image) is not image:
            widest = np.argmax(np.ptp(image.reshape(-1, 3), axis=0))
            image = np.repeat(image[..., widest:widest + 1], 3, axis=-1)
        pixels = files.to_uint8(image)
        if grey:
            pixels = np.rint(baseline.to_grey(pixels, "bright"))[..., None].astype(np.uint8)
        labels, _ = predict_instances(
            model, pixels, args.instances, threshold, tile=tile,
            overlap=args.overlap, min_size=10 if args.min_size is None else args.min_size)
        return labels, pixels[..., 0] if grey else pixels, None

    return segment


def _write(job: Job, labels: np.ndarray, shown: np.ndarray) -> None:
    """The 16-bit label PNG and the overlay, each written atomically: a failure leaves neither."""
    from PIL import Image

    from unet_course.overlay import overlay_instances

    if labels.max() > np.iinfo(np.uint16).max:
        raise ValueError(f"{str(job.image)!r}: {labels.max()} nuclei do not fit a 16-bit PNG")
    with files.atomic_path(job.labels) as labels_tmp, files.atomic_path(job.overlay) as overlay_tmp:
        Image.fromarray(labels.astype(np.uint16)).save(labels_tmp, format="PNG")
        Image.fromarray(overlay_instances(shown, labels)).save(overlay_tmp, format="PNG")
