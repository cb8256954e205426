"""The work of ``unet-course predict``: segment image files into 16-bit label PNGs and overlays.

What belongs here: ``plan`` (every check of the user's paths and images, before Keras is
imported or anything is written) and ``run`` (load the model, predict each image, write its
two PNGs atomically). The command line (``unet_course.cli``) only parses and prints.

Images are read by the course's one reader (``files.read_image``): the recipe's models take
the stored values (they normalise each image by its percentiles), older models take 0-255
pixels (``files.to_uint8``). Mistakes raise ``ValueError`` / ``FileNotFoundError`` naming the
flag or the file; the command line reports them in one line with exit code 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unet_course import files


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
        files.read_image(path)  # every pixel decoded: a truncated file stops us here
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


def run(model_path: Path, jobs: list[Job], output: Path, *, method: str = "watershed",
        threshold: float | None = None, min_size: int | None = None, tile: int | None = None,
        overlap: int | None = None, log: Callable[[str], None] = print) -> int:
    """Predict every job's image and write its label PNG and overlay; return the file count.

    The output folder is made if missing, and removed again if nothing could be written.
    """
    from unet_course import instances, normalization, recipe  # noqa: F401 (registers objects)

    model = recipe.load_model(model_path)
    if model.input_shape[-1] not in (1, 3):
        raise ValueError(f"--model takes {model.input_shape[-1]}-channel images; expected 1 or 3")
    if any(isinstance(layer, normalization.PercentileNormalization) for layer in model.layers):
        segment = _recipe_segmenter(model, model_path, method, threshold, min_size)
    else:
        segment = _tiled_segmenter(model, method, threshold, min_size, tile, overlap)
    made = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    try:
        for job in jobs:
            labels, shown = segment(files.read_image(job.image))
            _write(job, labels, shown)
            log(f"{job.image.name}: {labels.max()} nuclei, {labels.shape[1]}x{labels.shape[0]} "
                f"-> {job.labels.name}, {job.overlay.name}")
    finally:
        if made and not any(output.iterdir()):
            output.rmdir()
    return 2 * len(jobs)


def _recipe_segmenter(model, model_path: Path, method, threshold, min_size):
    """A model that normalises its own input: stored values in, whole images at once, with
    the post-processing chosen in training (from its record, when the record is its own)."""
    from unet_course import instances, recipe

    try:
        trained = files.read_run_record(model_path) or {}
    except ValueError:
        trained = {}
    post = dict(trained.get("postprocessing") or recipe.DEFAULT_POSTPROCESSING)
    if threshold:
        post["threshold"] = threshold
    if min_size is not None:
        post["min_size"] = min_size

    def segment(image):
        probs = recipe.predict_classes(model, [image])[0]
        return instances.label_instances(probs, method=method, **post), files.to_uint8(image)

    return segment


def _tiled_segmenter(model, method, threshold, min_size, tile, overlap):
    """An older model (``Rescaling(1/255)``): 0-255 pixels in, overlap-tile prediction."""
    from unet_course import instances

    tile = tile or model.input_shape[1]
    instances.tile_plan(model, tile, overlap)  # a bad tile fails here, before any file
    grey = model.input_shape[-1] == 1

    def segment(image):
        pixels = files.to_uint8(image)
        pixels = files.to_grey(pixels) if grey else pixels
        labels, _ = instances.predict_instances(
            model, pixels, method, threshold or 0.5, tile=tile, overlap=overlap,
            min_size=10 if min_size is None else min_size)
        return labels, pixels if not grey else pixels[..., 0]

    return segment


def _write(job: Job, labels: np.ndarray, shown: np.ndarray) -> None:
    """The 16-bit label PNG and the overlay, each written atomically."""
    from PIL import Image

    from unet_course import instances

    if labels.max() > np.iinfo(np.uint16).max:
        raise ValueError(f"{str(job.image)!r}: {labels.max()} nuclei do not fit a 16-bit PNG")
    with files.atomic_path(job.labels) as tmp:
        Image.fromarray(labels.astype(np.uint16)).save(tmp, format="PNG")
    with files.atomic_path(job.overlay) as tmp:
        Image.fromarray(instances.overlay_instances(shown, labels)).save(tmp, format="PNG")
