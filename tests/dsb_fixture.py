"""Build a small Data Science Bowl 2018 folder in the exact on-disk layout, for tests.

    ROOT/<id>/images/<id>.png        RGBA, RGB or grayscale PNG, mixed sizes
    ROOT/<id>/masks/<mask_id>.png    one 0/255 grayscale PNG per nucleus

``make_dsb_fixture`` returns what ``load_dsb2018`` should give back, so a test compares the
loader with the truth written to disk. ``break_fixture`` damages a copy in the ways a real
download or a hand-edited folder can be damaged.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

# (height, width, PIL mode of the image file)
DEFAULT_SPECS = [(48, 64, "RGBA"), (40, 40, "RGB"), (36, 52, "L"), (56, 44, "RGBA")]


def _hex_id(rng: np.random.Generator) -> str:
    return hashlib.sha256(rng.bytes(16)).hexdigest()


def _discs(h: int, w: int, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Up to ``n`` non-overlapping disc masks (H, W) bool."""
    yy, xx = np.mgrid[:h, :w]
    taken = np.zeros((h, w), bool)
    masks = []
    for _ in range(50 * n):
        r = rng.integers(3, 7)
        cy, cx = rng.integers(r, h - r), rng.integers(r, w - r)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        if not (disc & taken).any():
            masks.append(disc)
            taken |= disc
        if len(masks) == n:
            break
    return masks


def write_sample(root: Path, h: int, w: int, mode: str, rng: np.random.Generator,
                 n_nuclei: int = 4) -> tuple[str, np.ndarray, np.ndarray]:
    """Write one sample; return (id, expected RGB image (H, W, 3) uint8, labels (H, W) int32)."""
    sample_id = _hex_id(rng)
    masks = _discs(h, w, n_nuclei, rng)
    mask_ids = sorted(_hex_id(rng) for _ in masks)  # labels follow sorted file names
    labels = np.zeros((h, w), np.int32)
    for k, mask in enumerate(masks, start=1):
        labels[mask] = k
    rgb = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    rgb[labels > 0] += np.array([150, 120, 90], np.uint8)
    (root / sample_id / "images").mkdir(parents=True)
    (root / sample_id / "masks").mkdir()
    if mode == "RGBA":
        alpha = np.full((h, w, 1), 255, np.uint8)
        Image.fromarray(np.concatenate([rgb, alpha], -1), "RGBA").save(
            root / sample_id / "images" / f"{sample_id}.png")
    elif mode == "I;16":  # 12-bit data in a 16-bit grey PNG (what load_dsb2018 gives differs)
        grey = rgb[..., 0].astype(np.uint16) * 16
        Image.fromarray(grey).save(root / sample_id / "images" / f"{sample_id}.png")
    elif mode == "dark":  # grey bright-field: dark nuclei on a light field
        Image.fromarray(255 - rgb[..., 0], "L").save(
            root / sample_id / "images" / f"{sample_id}.png")
    elif mode == "L":
        rgb = np.repeat(rgb[..., :1], 3, axis=-1)
        Image.fromarray(rgb[..., 0], "L").save(root / sample_id / "images" / f"{sample_id}.png")
    else:
        Image.fromarray(rgb, "RGB").save(root / sample_id / "images" / f"{sample_id}.png")
    for k, mask_id in enumerate(mask_ids, start=1):
        png = np.where(labels == k, 255, 0).astype(np.uint8)
        Image.fromarray(png, "L").save(root / sample_id / "masks" / f"{mask_id}.png")
    return sample_id, rgb, labels


def make_dsb_fixture(root, specs=DEFAULT_SPECS, seed: int = 0) -> dict:
    """Write samples under ``root``; return ``{id: (image (H, W, 3) uint8, labels int32)}``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth = {}
    for h, w, mode in specs:
        sample_id, image, labels = write_sample(root, h, w, mode, rng)
        truth[sample_id] = (image, labels)
    return truth


def break_fixture(root, kind: str) -> Path:
    """Damage the first sample (sorted id) of a fixture; return the file or folder named.

    kinds: ``missing_masks``, ``empty_masks``, ``missing_image``, ``unreadable_image``,
    ``unreadable_mask``, ``mask_size``, ``overlap``.
    """
    root = Path(root)
    sample = sorted(p for p in root.iterdir() if p.is_dir())[0]
    masks = sorted((sample / "masks").glob("*.png")) if (sample / "masks").is_dir() else []
    image = sample / "images" / f"{sample.name}.png"
    if kind in ("missing_masks", "empty_masks"):
        for m in masks:
            m.unlink()
        if kind == "missing_masks":
            (sample / "masks").rmdir()
        return sample / "masks"
    if kind == "missing_image":
        image.unlink()
        return image
    if kind in ("unreadable_image", "unreadable_mask"):
        target = image if kind == "unreadable_image" else masks[1]
        target.write_bytes(target.read_bytes()[:40])  # a PNG cut short
        return target
    if kind == "mask_size":
        Image.fromarray(np.zeros((7, 9), np.uint8), "L").save(masks[-1])
        return masks[-1]
    if kind == "overlap":
        first = np.asarray(Image.open(masks[0])) > 0
        extra = np.where(np.roll(first, 1, axis=1), 255, 0).astype(np.uint8)
        Image.fromarray(extra, "L").save(sample / "masks" / ("f" * 64 + ".png"))
        return sample / "masks" / ("f" * 64 + ".png")
    raise ValueError(f"unknown kind {kind!r}")
