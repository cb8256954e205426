"""The 2018 Data Science Bowl nuclei (BBBC038, CC0; Caicedo et al., Nature Methods 2019).

On-disk layout (the ``stage1_train`` archive unzips to exactly this)::

    ROOT/<id>/images/<id>.png        one image: RGBA, RGB or grey, sizes vary
    ROOT/<id>/masks/<mask_id>.png    one file per nucleus, 0 = background, nonzero = nucleus

``load_dsb2018`` reads images and instance label maps at native resolution; ``experiment_groups``
names each slide's image size and modality; ``download_dsb2018`` fetches the archive (``pooch``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import tempfile
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from unet_course.files import HIGH, LOW, is_grey, one_colour_as_grey, read_image, to_uint8

__all__ = ["DSB2018_URL", "DSB2018_IMAGES", "dsb2018_ids", "experiment_groups", "load_dsb2018",
           "download_dsb2018"]

DSB2018_URL = "https://data.broadinstitute.org/bbbc/BBBC038/stage1_train.zip"
DSB2018_IMAGES = 670  # images in stage1_train
MARKER = ".dsb2018_complete"
_NOT_PNG = (".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
_GREY_MODES = ("1", "L", "I", "I;16", "I;16B", "I;16L", "F")  # PIL modes read as they are


def dsb2018_ids(root) -> list[str]:
    """Sorted image ids (the sub-folder names) of a DSB2018 folder.

    Hidden folders and folders starting with ``__`` (``__MACOSX``) and plain files are ignored.
    Raises ``FileNotFoundError`` when ``root`` is missing or holds no sample folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"DSB2018 folder {str(root)!r} does not exist or is not a folder")
    ids = sorted(p.name for p in root.iterdir()
                 if p.is_dir() and not p.name.startswith((".", "__")))
    if not ids:
        raise FileNotFoundError(
            f"{str(root)!r} holds no sample folders; expected ROOT/<id>/images/<id>.png "
            "and ROOT/<id>/masks/*.png (the unzipped stage1_train archive)"
        )
    return ids


def _image_path(sample: Path) -> Path:
    path = sample / "images" / f"{sample.name}.png"
    if not path.is_file():
        raise FileNotFoundError(f"missing image file {str(path)!r}")
    return path


def _read_rgb(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8, one colour as grey (as ``predict.predict_classes`` sees it)."""
    return to_uint8(one_colour_as_grey(read_image(path)))


def _read_mask(path: Path) -> np.ndarray:
    """``(H, W)`` bool: nonzero pixels of a mask PNG (colour ones converted to grey by PIL).
    Raises ValueError for an unreadable file or a label map (objects numbered 1..K)."""
    try:
        with Image.open(path) as image:
            grey = np.asarray(image if image.mode in _GREY_MODES else image.convert("L"))
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot read image file {str(path)!r}: {err}") from err
    values = np.unique(grey[grey > 0])
    if len(values) >= 2 and values.max() <= 2 * len(values):  # 1, 2, ..., K: a label map
        raise ValueError(f"mask {str(path)!r} holds {len(values)} objects numbered "
                         f"{values.min()} to {values.max()} (a label map); the DSB layout has "
                         "one PNG per nucleus: save each value as a mask PNG of its own")
    return grey > 0


def _load_sample(sample: Path, overlap: str) -> tuple[np.ndarray, np.ndarray]:
    image_path = _image_path(sample)
    mask_dir = sample / "masks"
    if not mask_dir.is_dir():
        raise FileNotFoundError(
            f"missing masks folder {str(mask_dir)!r} (stage1_test images have no masks; "
            "use the stage1_train folder)"
        )
    mask_paths = sorted(p for p in mask_dir.iterdir() if p.suffix.lower() == ".png")
    other = sorted(p for p in mask_dir.iterdir() if p.suffix.lower() in _NOT_PNG)
    if other:  # never ignored silently: a JPEG's compression blurs the mask's edges
        raise ValueError(f"mask {str(other[0])!r} is not a PNG; DSB2018 masks are PNG files "
                         "(convert it losslessly, or remove it)")
    if not mask_paths:
        raise FileNotFoundError(f"no mask PNG files in {str(mask_dir)!r}")
    image = _read_rgb(image_path)
    labels = np.zeros(image.shape[:2], np.int32)
    owners: list[Path] = []  # the file of label k + 1
    for path in mask_paths:
        mask = _read_mask(path)
        if mask.shape != labels.shape:
            raise ValueError(f"mask {str(path)!r} has size {mask.shape} but its image "
                             f"{str(image_path)!r} has size {labels.shape}")
        clash = mask & (labels > 0)  # earlier labels are kept
        if clash.any() and overlap == "error":
            raise ValueError(f"mask {str(path)!r} overlaps mask "
                             f"{str(owners[labels[clash][0] - 1])!r} on {int(clash.sum())} "
                             "pixels (pass overlap='first' to keep the first)")
        if mask.any():
            owners.append(path)
            labels[mask & ~clash] = len(owners)
    return image, labels


def load_dsb2018(root, limit: int | None = None, *, overlap: str = "first",
                 ids: list[str] | None = None):
    """``(images, labels)`` of a DSB2018 folder at native resolution: lists of ``(H, W, 3)``
    uint8 images and ``(H, W)`` int32 label maps (0 background; mask ``k`` in sorted file-name
    order, empty ones skipped, is label ``k``).

    ``ids`` (default: ``dsb2018_ids``) are read in their order, the first ``limit`` of them; a
    pixel in two masks keeps the first label (``overlap="first"``) or raises (``"error"``).
    Raises FileNotFoundError / ValueError naming the file: missing image or masks folder, a
    mask that is not a PNG, an unreadable PNG, a mask whose size differs from its image, an
    overlap with ``"error"``.
    """
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)
                              or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    if overlap not in ("first", "error"):
        raise ValueError(f"overlap must be 'first' or 'error', got {overlap!r}")
    root = Path(root)
    known = dsb2018_ids(root)
    if ids is None:
        ids = known
    elif set(ids) - set(known):
        raise FileNotFoundError(f"no sample folder {sorted(set(ids) - set(known))[0]!r} in "
                                f"{str(root)!r}")
    ids = list(ids)[:limit]
    images, labels = [], []
    for sample_id in ids:
        image, label = _load_sample(root / sample_id, overlap)
        images.append(image)
        labels.append(label)
    return images, labels


def modality(image: np.ndarray) -> str:
    """``"stain"`` for a colour ``(H, W, 3)`` image, else ``"brightfield"`` when the median of
    its grey plane lies above the middle of its ``LOW``-th to ``HIGH``-th percentile (a mostly
    light field), else ``"fluorescence"``."""
    if not is_grey(image):
        return "stain"
    low, median, high = np.percentile(image[..., 0], [LOW, 50, HIGH])
    return "brightfield" if median > (low + high) / 2 else "fluorescence"


def experiment_groups(root, ids: list[str]) -> list[str]:
    """``"<H>x<W> <modality>"`` of each sample's image as ``load_dsb2018`` reads it (masks are
    not read): slides of one experiment share it. Raises as ``load_dsb2018`` does for an image."""
    groups = []
    for sample_id in ids:
        image = _read_rgb(_image_path(Path(root) / sample_id))
        groups.append(f"{image.shape[0]}x{image.shape[1]} {modality(image)}")
    return groups


# ----------------------------------------------------------------------------- downloading

def _check_download_args(dest: Path, url, sha256, expected_images, timeout, keep_archive,
                         progress) -> None:
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}")
    parts = urllib.parse.urlsplit(url)  # plain HTTP only to this machine (test servers)
    if parts.scheme not in ("https", "file") and not (
            parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")):
        raise ValueError(f"url must start with https:// (or file://), got {url!r}")
    for name, flag in (("keep_archive", keep_archive), ("progress", progress)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    if sha256 is not None and not (isinstance(sha256, str)
                                   and re.fullmatch("[0-9a-fA-F]{64}", sha256)):
        raise ValueError(f"sha256 must be 64 hexadecimal digits or None, got {sha256!r}")
    if expected_images is not None and (not isinstance(expected_images, int)
                                        or isinstance(expected_images, bool)
                                        or expected_images < 1):
        raise ValueError(f"expected_images must be a positive int or None, "
                         f"got {expected_images!r}")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if dest.exists() and not (dest / MARKER).is_file():
        if not dest.is_dir() or any(dest.iterdir()):
            raise FileExistsError(f"{str(dest)!r} exists and is not an empty folder nor a "
                                  "finished download; choose a new folder")


def _copy_local(url: str, output_file: str, pooch_instance=None) -> None:
    """A pooch downloader for ``file://`` URLs (pooch itself speaks HTTP(S), FTP, SFTP, DOI)."""
    shutil.copyfile(urllib.request.url2pathname(urllib.parse.urlsplit(url).path), output_file)


def _fetch(url: str, folder: Path, sha256: str | None, timeout: float, progress: bool) -> Path:
    """``pooch.retrieve`` of ``url`` into ``folder``; its path. Raises ``ConnectionError``
    (network, HTTP status, a body cut short) or ``ValueError`` (checksum)."""
    import pooch
    import requests

    if urllib.parse.urlsplit(url).scheme == "file":
        downloader = _copy_local
    else:  # progressbar=True draws a tqdm bar on stderr
        downloader = pooch.HTTPDownloader(progressbar=progress, timeout=timeout)

    def quiet(record: logging.LogRecord) -> bool:  # a filter: pooch's logger caches its level
        return progress or record.levelno >= logging.WARNING

    logger = pooch.get_logger()
    logger.addFilter(quiet)
    try:
        return Path(pooch.retrieve(url, known_hash=sha256 and f"sha256:{sha256.lower()}",
                                   fname=Path(urllib.parse.urlsplit(url).path).name or "archive",
                                   path=folder, downloader=downloader))
    except requests.HTTPError as err:
        raise ConnectionError(f"download of {url} failed: HTTP {err.response.status_code} "
                              f"{err.response.reason}") from err
    except (requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError) as err:
        raise ConnectionError(f"download of {url} broke off before the end ({err})") from err
    except (requests.RequestException, OSError) as err:
        raise ConnectionError(
            f"could not download {url} ({err}). Check that you are online; or download "
            "stage1_train.zip by hand from https://bbbc.broadinstitute.org/BBBC038 and unzip it "
            "into a folder for load_dsb2018; or use the synthetic nuclei, which need no network."
        ) from err
    except ValueError as err:  # the only ValueError retrieve raises here: pooch's hash check
        raise ValueError(f"SHA-256 of {url} does not match the one given: {err}") from err
    finally:
        logger.removeFilter(quiet)


def _extract(path: Path, dest: Path) -> None:
    """Unzip ``path`` into ``dest`` once every member's path is checked. Raises ``ValueError``
    for a file that is not a zip, a member that is a symbolic link or would land outside
    ``dest`` (absolute, ``..``, a drive letter), or a corrupt member (CRC)."""
    if not zipfile.is_zipfile(path):
        raise ValueError("the downloaded file is not a zip archive (an error page?)")
    dest.mkdir()
    base = dest.resolve()
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name, parts = info.filename, info.filename.replace("\\", "/").split("/")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise ValueError(f"archive member {name!r} is a symbolic link; refusing to extract")
            if (name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]
                    or not (base / name).resolve().is_relative_to(base)):
                raise ValueError(f"archive member {name!r} would land outside {str(dest)!r}; "
                                 "refusing to extract anything")
        try:  # extracting a member checks its CRC
            archive.extractall(dest)
        except (zipfile.BadZipFile, zlib.error) as err:
            raise ValueError(f"the downloaded archive is corrupt: {err}") from err


def download_dsb2018(dest, url: str = DSB2018_URL, *, sha256: str | None = None,
                     expected_images: int | None = DSB2018_IMAGES, timeout: float = 60.0,
                     keep_archive: bool = False, progress: bool = True) -> Path:
    """Download the DSB2018 stage-1 training set into ``dest`` and return ``dest``.

    ``dest`` must be new or empty; once it holds a finished download (its ``MARKER`` record)
    nothing is fetched again. ``url``: HTTPS (``file://`` and ``http://127.0.0.1`` for tests);
    ``sha256``: the archive's, ``None`` skips that check; ``expected_images``: how many
    ``<id>/images/<id>.png`` it must hold (``None`` skips); ``timeout``: seconds to wait for the
    server; ``keep_archive``: also keep the zip beside ``dest``; ``progress``: pooch's bar and log.

    Raises ``ConnectionError`` (offline, HTTP error, download cut short), ``ValueError``
    (checksum, not a zip, corrupt, unsafe member, wrong image count) or ``FileExistsError``
    (``dest`` holds other files); ``dest`` is then left as it was, no temporary file remains.
    """
    import pooch

    dest = Path(dest)
    _check_download_args(dest, url, sha256, expected_images, timeout, keep_archive, progress)
    if (dest / MARKER).is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-", suffix=".tmp"))
    try:  # everything happens inside `work`, removed at the end whatever happened
        archive = _fetch(url, work / "download", sha256, timeout, progress)
        _extract(archive, work / "unpacked")
        root = work / "unpacked"
        folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith("__")]
        if _count_samples(root) == 0 and len(folders) == 1:  # the archive wrapped it all
            root = folders[0]
        count = _count_samples(root)
        if expected_images is not None and count != expected_images:
            raise ValueError(f"the archive holds {count} images in the <id>/images/<id>.png "
                             f"layout, expected {expected_images}")
        record = {"url": url, "sha256": pooch.file_hash(archive),
                  "bytes": archive.stat().st_size, "images": count}
        (root / MARKER).write_text(json.dumps(record, indent=1) + "\n")
        if dest.exists():
            dest.rmdir()  # empty: checked before downloading
        os.replace(root, dest)
        if keep_archive:
            os.replace(archive, dest.parent / archive.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def _count_samples(root: Path) -> int:
    return sum(1 for p in root.iterdir() if (p / "images" / f"{p.name}.png").is_file())
