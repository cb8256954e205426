"""One real slide with ground truth: a Data Science Bowl 2018 fluorescence image (BBBC038, CC0),
512x512, 16-bit, 125 nuclei, as shipped in the ``stardist`` wheel. ``fetch_real_slide``
(``python -m unet_course.real_slide``, run by ``make setup``) downloads that wheel and writes
the two files, verified by SHA-256, under ``data/real_slide``; ``load_real_slide`` reads them.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from unet_course import files

STARDIST = "stardist==0.9.2"
FILES = {  # name in data/real_slide -> (member of the wheel, SHA-256)
    "img2d.tif": ("stardist/data/images/img2d.tif",
                  "f9ccc1571b92c861ff87e28463068b43f61bd47357ed0503f711e5cd1eb97750"),
    "mask2d.tif": ("stardist/data/images/mask2d.tif",
                   "59ad5e820b7982ca9d13e946fa6e7f64e2714899e00a2ae6c69aa79aad53d46f"),
}
_WHEEL_TAGS = ["--only-binary=:all:", "--platform", "manylinux_2_28_x86_64",
               "--python-version", "3.11", "--implementation", "cp"]


def slide_dir() -> Path:
    """``data/real_slide`` in the course's data folder."""
    from unet_course.data import data_dir

    return data_dir() / "real_slide"


def extract_from_wheel(wheel: str | Path, dest: str | Path) -> list[Path]:
    """Write the slide's two files from a stardist wheel into ``dest``, atomically; return
    their paths. ValueError, before anything is written, for a missing or altered member."""
    dest = Path(dest)
    contents = {}
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name, (member, digest) in FILES.items():
            if member not in names:
                raise ValueError(f"{str(wheel)!r} has no {member}; expected a stardist wheel")
            data = archive.read(member)
            found = hashlib.sha256(data).hexdigest()
            if found != digest:
                raise ValueError(f"{member} in {str(wheel)!r} has SHA-256 {found}, "
                                 f"expected {digest}")
            contents[name] = data
    dest.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        with files.atomic_path(dest / name) as tmp:
            tmp.write_bytes(data)
    return [dest / name for name in contents]


def is_fetched(dest: str | Path | None = None) -> bool:
    """True when both files are in ``dest`` (default ``slide_dir()``) with the right hashes."""
    dest = Path(dest) if dest is not None else slide_dir()
    return all((dest / name).is_file() and files.sha256(dest / name) == digest
               for name, (_, digest) in FILES.items())


def fetch_real_slide(dest: str | Path | None = None) -> Path:
    """Download the stardist wheel (``pip download --no-deps``) and extract the slide into
    ``dest`` (default ``slide_dir()``) unless it is there; return the folder. RuntimeError with
    pip's message when the download fails."""
    dest = Path(dest) if dest is not None else slide_dir()
    if is_fetched(dest):
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *_WHEEL_TAGS,
                   "--dest", tmp, STARDIST]
        result = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("stardist-*.whl"))
        if result.returncode or not wheels:
            raise RuntimeError(f"could not download {STARDIST} from PyPI: "
                               f"{(result.stderr or result.stdout).strip()[-500:]}")
        extract_from_wheel(wheels[0], dest)
    return dest


def load_real_slide(dest: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The slide ``(512, 512) uint16`` and its labels ``(512, 512) int32``; never downloads.
    FileNotFoundError naming the command that fetches a missing file, ValueError for a
    damaged one."""
    from skimage import io

    dest = Path(dest) if dest is not None else slide_dir()
    for name, (_, digest) in FILES.items():
        path = dest / name
        if not path.is_file():
            raise FileNotFoundError(f"{str(path)!r} is missing; fetch the real slide with "
                                    "`make setup` or `python -m unet_course.real_slide`")
        if files.sha256(path) != digest:
            raise ValueError(f"{str(path)!r} is damaged (SHA-256 differs from {digest}); "
                             "delete it and run `python -m unet_course.real_slide`")
    image = io.imread(dest / "img2d.tif")
    labels = io.imread(dest / "mask2d.tif").astype(np.int32)
    return image, labels


def as_rgb(image: np.ndarray) -> np.ndarray:
    """A grey ``(H, W)`` slide as ``(H, W, 3)`` (the same plane three times), dtype kept."""
    image = np.asarray(image)
    return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image


if __name__ == "__main__":
    print(f"real slide in {fetch_real_slide()}")
