"""Atomic writing, the run record (``metrics.json``), path checks and the one image reader."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
RECORD = "metrics.json"
LOW, HIGH = 1.0, 99.8  # the percentiles the course's normalisation maps to 0 and 1


# --------------------------------------------------------------------------- atomic writing


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) inside the block; raise ``KeyboardInterrupt`` after it.
    Off the main thread, where SIGINT is ignored or ``interrupts`` records it: no change."""
    from unet_course import interrupts

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None) or interrupts.active():
        yield
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); rename it to ``path`` on success.
    If the block raises, ``path`` is left as it was; an ``OSError`` is raised naming ``path``."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        with deferred_interrupt():
            yield tmp
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_folder(path: str | Path) -> Iterator[Path]:
    """Yield a new, empty, hidden sibling of the folder ``path``; it replaces ``path`` when the
    block ends without an error, else it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.new-"))
    try:
        os.chmod(work, 0o777 & ~_umask())
        yield work
        _swap_in(work, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _swap_in(new: Path, path: Path) -> None:
    """Rename the folder ``new`` to ``path``; a non-empty ``path`` is set aside first, put
    back if the rename fails, and deleted after it succeeds."""
    old = None
    with deferred_interrupt():
        if path.is_dir() and any(path.iterdir()):
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
            os.rename(path, old)  # onto an empty folder: allowed, and atomic
        try:
            os.rename(new, path)
        except OSError:
            if old is not None:
                os.rename(old, path)
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


# --------------------------------------------------------------------------- the run record


def write_run_record(out_dir: str | Path, report: dict) -> dict:
    """Write and return ``out_dir/metrics.json``: ``report`` plus ``model.keras``'s SHA-256."""
    out = Path(out_dir)
    record = {**report, "model_sha256": sha256(out / "model.keras")}
    write_text(out / RECORD, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return record


def read_run_record(model: str | Path) -> dict | None:
    """The ``metrics.json`` beside ``model`` if it was written for this very file.

    Returns ``None`` when there is no record. Raises ``ValueError`` naming the record when it
    is not a JSON object, or when its ``model_sha256`` is missing or names another file.
    """
    model = Path(model)
    path = model.parent / RECORD
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{str(path)!r} is not readable JSON ({err})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{str(path)!r} holds a JSON {type(record).__name__}; expected the "
                         "object that `train` writes")
    if record.get("model_sha256") != sha256(model):
        why = "was written for another model" if "model_sha256" in record else "has no model_sha256"
        raise ValueError(f"{str(path)!r} {why}: it is not the training record of "
                         f"{str(model)!r}")
    return record


# --------------------------------------------------------------------------- path checks


def inside(path: str | Path, folder: str | Path) -> bool:
    """True when ``path`` is ``folder`` or lies under it (links resolved)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def check_writable(path: str | Path, flag: str) -> None:
    """Refuse a ``path`` whose nearest existing folder cannot be written (``PermissionError``)."""
    folder = Path(path).absolute()
    while not folder.exists():
        folder = folder.parent
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {str(path)!r}: folder {str(folder)!r} is not writable")


def check_keras_file(path: str | Path, flag: str = "--model") -> Path:
    """``path``, a complete ``.keras`` file (a zip holding ``config.json``); else
    ``FileNotFoundError`` or ``ValueError`` naming ``flag`` and the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {str(path)!r}: no such file; expected a .keras file")
    if path.suffix != ".keras":
        raise ValueError(f"{flag} {str(path)!r}: expected a .keras file")
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise ValueError(f"{flag} {str(path)!r} is not a complete .keras file (truncated or "
                         f"corrupted: {err})") from None
    if broken is not None or "config.json" not in names:
        raise ValueError(f"{flag} {str(path)!r} is not a complete .keras file (corrupted "
                         f"member {broken or 'config.json missing'!r})")
    return path


def user_os_error(err: OSError) -> bool:
    """True for an ``OSError`` the user can fix: full disk, read-only or forbidden folder."""
    return err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                         errno.ENOENT, errno.ENOTDIR, errno.EISDIR)


# --------------------------------------------------------------------------- reading images


def read_image(path: str | Path, channel: int | None = None) -> np.ndarray:
    """An image file as ``(H, W, 3)`` with its stored values, dtype kept (native byte order).

    Grey is repeated into three channels. A fourth (or second) channel is dropped only where
    the file declares it alpha (PNG ``RGBA``/``LA``, a TIFF's ``ExtraSamples``); with
    ``channel`` (0-based), that one channel is returned as grey. A TIFF stored ``(C, H, W)``
    (C of 2 to 4) is read as ``(H, W, C)``. Raises ``ValueError`` naming the file when it
    cannot be decoded (every pixel is), is not a grey or colour picture, has 2 or 4 channels
    none declared alpha and no ``channel``, or has no channel ``channel``.
    """
    pixels = _decode(path)
    if pixels.ndim == 3 and pixels.shape[0] in (2, 3, 4) and pixels.shape[-1] > 4:
        pixels = np.moveaxis(pixels, 0, -1)  # channels first (a planar TIFF)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    if pixels.ndim != 3 or min(pixels.shape[:2]) < 1 or (channel is None and pixels.shape[-1] > 4):
        raise ValueError(f"{str(path)!r}: expected a grey or colour image, got an array of "
                         f"shape {pixels.shape}")
    count = pixels.shape[-1]
    if channel is not None:
        if not 0 <= channel < count:
            raise ValueError(f"--channel {channel}: {str(path)!r} has {count} channel"
                             f"{'s' if count > 1 else ''} (0 to {count - 1})")
        pixels = pixels[..., channel:channel + 1]
    elif count in (2, 4):
        if not _alpha_declared(path, count):
            raise ValueError(f"{str(path)!r} has {count} channels and declares none of them "
                             "alpha, so which one holds the nuclei is unknown: pass --channel N "
                             f"(0 to {count - 1}) to predict that one as grey")
        pixels = pixels[..., :-1]  # the declared alpha
    return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels


SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"II+\x00",
              b"MM\x00+", b"BM")


def _decode(path: str | Path) -> np.ndarray:
    """Every pixel of an image file, native byte order, booleans as 0/255; ``ValueError``
    naming the file when its first bytes are not an image's or it is cut short."""
    from skimage import io

    with open(path, "rb") as handle:
        head = handle.read(8)
    if not head.startswith(SIGNATURES):
        raise ValueError(f"cannot read image file {str(path)!r}: not a readable image (its "
                         "first bytes are not those of a PNG, JPEG, TIFF or BMP file)")
    try:
        pixels = np.asarray(io.imread(str(path)))
    except Exception as err:  # noqa: BLE001 (each image library raises its own kind)
        reason = " ".join(str(err).split()).split(". ")[0][:100]  # first sentence only
        raise ValueError(f"cannot read image file {str(path)!r}: not a readable image "
                         f"({reason})") from None
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    if pixels.dtype.byteorder not in ("=", "|"):
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    if not (np.issubdtype(pixels.dtype, np.integer) or np.issubdtype(pixels.dtype, np.floating)):
        raise ValueError(f"{str(path)!r}: unsupported pixel type {pixels.dtype}")
    return pixels


def _alpha_declared(path: str | Path, channels: int) -> bool:
    """True when the file says its last channel is alpha: a TIFF's ``ExtraSamples``
    (associated or unassociated alpha), another format's ``A`` band or palette transparency."""
    from PIL import Image

    if Path(path).suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            extra = tuple(page.extrasamples)
            return page.samplesperpixel == channels and bool(extra) and int(extra[-1]) in (1, 2)
    with Image.open(path) as image:
        return image.getbands()[-1] == "A" or (image.mode == "P" and "transparency" in image.info)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """``uint8`` pixels as they are; any other dtype's ``LOW``-th and ``HIGH``-th percentiles
    (of all finite values) mapped to 0 and 255, clipped and rounded to uint8; NaN counts low."""
    from skimage.exposure import rescale_intensity

    pixels = np.asarray(pixels)
    if pixels.dtype == np.uint8:
        return pixels
    values = pixels.astype(np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(pixels.shape, np.uint8)
    low, high = np.percentile(finite, [LOW, HIGH])
    values = np.nan_to_num(values, nan=low)
    if not high > low:  # the few pixels above the rest are bright
        return np.where(values > low, 255, 0).astype(np.uint8)
    scaled = rescale_intensity(values, in_range=(low, high), out_range=(0.0, 255.0))
    return np.rint(scaled).astype(np.uint8)


# --------------------------------------------------------------------------- colour


ONE_COLOUR_TOLERANCE = 0.01  # the most colour_spread for one_colour_as_grey's "one colour"
EMPTY_CHANNEL = 0.1  # a channel whose range is under this share of the widest one's is empty


def is_grey(image: np.ndarray) -> bool:
    """True when the three channels of an ``(H, W, 3)`` image are equal."""
    return bool((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all())


def colour_spread(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, float] | None:
    """``(kept, u, spread)`` of a colour ``(H, W, 3)`` image, from every 7th pixel: the channels
    whose range (``LOW``-th to ``HIGH``-th percentile) is at least ``EMPTY_CHANNEL`` of the
    widest; their principal colour ``u`` (top eigenvector of their uncentred second moments);
    the root of the other eigenvalues over the percentile span of ``pixel . u``. None for a
    grey image, another shape, an empty or flat image, or non-finite values."""
    if image.ndim != 3 or image.shape[-1] != 3 or image.size == 0 or is_grey(image):
        return None
    sample = image.reshape(-1, 3)[::7].astype(np.float64)
    if not np.isfinite(sample).all():
        return None
    low, high = np.percentile(sample, [LOW, HIGH], axis=0)
    ranges = high - low
    if not ranges.max() > 0:
        return None
    kept = np.flatnonzero(ranges >= EMPTY_CHANNEL * ranges.max())
    sample = sample[:, kept]
    eigenvalues, vectors = np.linalg.eigh(sample.T @ sample / len(sample))  # ascending
    u = vectors[:, -1] * (1.0 if vectors[:, -1].sum() >= 0 else -1.0)
    low, high = np.percentile(sample @ u, [LOW, HIGH])
    if not high > low:
        return None
    off = np.sqrt(max(float(eigenvalues[:-1].sum()), 0.0))
    return kept, u, off / (high - low)


def one_colour_as_grey(image: Any, tolerance: float = ONE_COLOUR_TOLERANCE) -> np.ndarray:
    """A colour image of one colour times a brightness (DAPI saved in blue) as its brightness
    ``image[..., kept] . u`` in three channels, float32 ``(H, W, 3)``, when ``colour_spread``'s
    spread is at most ``tolerance``; any other image is returned as it is, the same object."""
    image = np.asarray(image)
    colour = colour_spread(image)
    if colour is None or colour[2] > tolerance:
        return image
    kept, u, _ = colour
    brightness = image[..., kept].astype(np.float32) @ u.astype(np.float32)
    return np.repeat(brightness[..., None], 3, axis=-1)
