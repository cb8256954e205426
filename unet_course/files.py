"""Files the package writes and images it reads, and the checks of a user's paths.

What belongs here:

- **Atomic writing** (``atomic_path``, ``write_text``, ``write_json``): every output of the
  command line (a model checkpoint, ``history.csv``, ``metrics.json``, a label PNG, an
  ``evaluate --out`` report) is written to a temporary file in the same folder and renamed
  over its target, so a file is either complete or the previous version. Ctrl-C during the
  write is held back and honoured right after it (``deferred_interrupt``). A full disk or a
  read-only folder raises ``OSError`` naming the target file.
- **The run record** (``write_run_record``, ``read_run_record``): ``metrics.json`` holds the
  SHA-256 of the ``model.keras`` it describes, so a record and a model of different runs
  (a copied model, a stale record after ``--overwrite``) are never mixed.
- **The image reader** for every command and for the DSB2018 loader (``read_image``,
  ``to_uint8``). One normalisation, documented once:

  * ``read_image`` returns the stored values, ``(H, W, 3)``, native byte order (so a
    big-endian 16-bit TIFF reads right): 8-bit stays ``uint8``, 16-bit stays ``uint16``,
    float stays float. Grey is repeated into three channels, alpha dropped. The recipe's
    models (first layer ``normalization.PercentileNormalization``) take these values.
  * ``to_uint8`` gives the 0-255 pixels the older models (``Rescaling(1/255)``) and the
    training batches use: 8-bit images unchanged; 16-bit and float images mapped by their
    own percentiles, the 1st to 0 and the 99.8th to 255 (``normalization.LOW``/``HIGH``,
    the recipe layer's percentiles), clipped and rounded. So 12-bit data stored in 16 bits
    is not darkened (dividing by 257 would make it nearly black) and a bright outlier does
    not squash the rest (as a min-max stretch would).
- **Path checks before any work** (``check_keras_file``, ``check_writable``, ``inside``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import signal
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
RECORD = "metrics.json"
_LOW, _HIGH = 1.0, 99.8  # normalization.LOW, HIGH (not imported: that module imports Keras)


# --------------------------------------------------------------------------- atomic writing


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) inside the block; raise ``KeyboardInterrupt`` after it.

    Outside the main thread, or where SIGINT is ignored, the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None):
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

    If the block raises, or is interrupted, the temporary file is removed and ``path`` keeps
    its previous content (or stays absent). An ``OSError`` is raised again naming ``path``.
    """
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


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, payload) -> None:
    """Write ``payload`` as indented JSON (and a final newline) to ``path`` atomically."""
    write_text(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- the run record


def write_run_record(out_dir: str | Path, report: dict) -> dict:
    """Write ``out_dir/metrics.json``: ``report`` plus ``model_sha256`` of ``out_dir/model.keras``."""
    out = Path(out_dir)
    record = {**report, "model_sha256": sha256(out / "model.keras")}
    write_json(out / RECORD, record)
    return record


def read_run_record(model: str | Path) -> dict | None:
    """The ``metrics.json`` beside ``model`` if it was written for this very file, else refuse.

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
        why = "has no model_sha256" if "model_sha256" not in record else "was written for another model"
        raise ValueError(f"{str(path)!r} {why}: it is not the training record of "
                         f"{str(model)!r}; pass --data and --seed to name the split yourself")
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
    """Refuse anything but a complete ``.keras`` file (a zip holding ``config.json``).

    Raises ``FileNotFoundError`` or ``ValueError`` naming ``flag`` and the file, before Keras
    is imported: a truncated or corrupted file is reported as such, not as a missing one.
    """
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


def read_image(path: str | Path) -> np.ndarray:
    """An image file as ``(H, W, 3)`` with its stored values (see the module docstring).

    Every pixel is decoded, so a truncated file fails here. Raises ``ValueError`` naming the
    file when it cannot be decoded or is not a grey or colour picture (a stack, a volume).
    """
    from skimage import io

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
    if pixels.ndim == 3 and pixels.shape[-1] == 2:  # grey + alpha
        pixels = pixels[..., :1]
    if pixels.ndim == 3 and pixels.shape[-1] == 4:  # RGBA
        pixels = pixels[..., :3]
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3) or min(pixels.shape[:2]) < 1:
        raise ValueError(f"{str(path)!r}: expected a grey or colour image, got an array of "
                         f"shape {pixels.shape}")
    if not (np.issubdtype(pixels.dtype, np.integer) or np.issubdtype(pixels.dtype, np.floating)):
        raise ValueError(f"{str(path)!r}: unsupported pixel type {pixels.dtype}")
    return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """0-255 pixels: ``uint8`` unchanged; anything else mapped by the 1st and 99.8th
    percentiles of all its pixels and channels (as ``normalization.percentile_normalize``)
    to 0 and 255, clipped and rounded. Same shape, ``uint8``."""
    pixels = np.asarray(pixels)
    if pixels.dtype == np.uint8:
        return pixels
    values = pixels.astype(np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(pixels.shape, np.uint8)
    low, high = np.percentile(finite, [_LOW, _HIGH])
    scaled = (np.nan_to_num(values, nan=low) - low) * (255.0 / max(high - low, 1e-12))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` -> ``(H, W, 1)`` of the same dtype: ITU-R 601 luma (PIL's "L")."""
    weights = np.array([0.299, 0.587, 0.114])
    grey = np.asarray(rgb, np.float64) @ weights
    if np.issubdtype(rgb.dtype, np.integer):
        grey = np.rint(grey)
    return grey.astype(rgb.dtype)[..., None]
