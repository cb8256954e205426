"""``render``: a label map of ``data.make_nuclei`` as a microscope-like (H, W, 3) uint8 image."""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage
from skimage.measure import block_reduce
from skimage.transform import resize

COARSE = 8  # out-of-focus light and the cells' halo are drawn on an 8x coarser grid


def _unit_noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Zero-mean, unit-variance uniform noise of ``shape``, float32."""
    return (rng.random(shape, dtype=np.float32) - 0.5) * np.float32(np.sqrt(12.0))


@functools.lru_cache(maxsize=32)
def _interpolation_matrix(size: int, cells: int) -> np.ndarray:
    """``(size, cells)`` float32 ``M``, read-only: ``M @ A @ M.T`` is ``skimage.transform.resize(A,
    (size, size), order=1, mode="edge")`` of a ``(cells, cells)`` array ``A``."""
    matrix = resize(np.eye(cells, dtype=np.float32), (size, cells), order=1, mode="edge",
                    anti_aliasing=False).astype(np.float32)
    matrix.flags.writeable = False
    return matrix


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth zero-mean random field ``(size, size)`` float32: ``cells x cells`` noise resized."""
    matrix = _interpolation_matrix(size, cells)
    return matrix @ _unit_noise(rng, (cells, cells)) @ matrix.T


def _illumination(rng: np.random.Generator, size: int, strength: float) -> np.ndarray:
    """Uneven lighting, ``(size, size)`` float32 around 1: a tilt, a vignette darkening towards
    an off-centre rim, and a gentle low-frequency ripple, all scaled by ``strength``."""
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    gy, gx = rng.uniform(-0.4, 0.4, 2) * strength
    cy, cx = rng.uniform(-0.3, 0.3, 2)
    vignette = rng.uniform(0.2, 1.1) * strength
    # tilt - vignette * squared distance from (cy, cx): a sum of a column and a row profile
    rows = 1 + gy * ramp - vignette * (ramp - cy) ** 2
    cols = gx * ramp - vignette * (ramp - cx) ** 2
    light = _smooth_field(rng, size, 3) * np.float32(0.1 * strength)
    light += rows[:, None]  # float64 profiles, added into the float32 field
    light += cols
    return np.maximum(light, 0.25, out=light)


def _debris(rng: np.random.Generator, size: int, amount: float) -> np.ndarray:
    """Unlabelled specks (dust, small bright artefacts) and now and then a fibre: ``(size,
    size)`` float32 signal, 0 where there is none."""
    field = np.zeros((size, size), dtype=np.float32)
    number = rng.poisson(amount * (size / 256) ** 2)
    if not number:
        return field
    ys, xs = rng.integers(0, size, (2, number))
    field[ys, xs] = rng.uniform(6.0, 24.0, number)  # a point of light, spread by the blur
    if rng.random() < 0.3:  # a fibre: a short bright curve
        t = np.linspace(0, 1, 60)
        y0, x0 = rng.uniform(0, size, 2)
        dy, dx = rng.uniform(-0.3, 0.3, 2) * size
        bend = rng.uniform(-0.1, 0.1) * size * np.sin(np.pi * t)
        yy = np.clip(y0 + dy * t + bend, 0, size - 1).astype(int)
        xx = np.clip(x0 + dx * t - bend, 0, size - 1).astype(int)
        field[yy, xx] = rng.uniform(3.0, 8.0)
    return field  # blurred with the rest of the image: specks a few pixels across


def render(rng, labels, depth, bright, ghosts, style, difficulty, out) -> None:
    """Draw a microscope-like image of ``labels`` ``(H, W)`` into ``out`` ``(H, W, 3)`` uint8.

    ``depth`` and ``bright`` ``(H, W)`` float32: each pixel's depth in its nucleus (0 centre,
    1 outline) and relative brightness (0 off the nuclei); ``ghosts`` the out-of-focus nuclei,
    ``(H // COARSE, W // COARSE)`` float32 (at least 2 x 2). ``style``: ``"fluorescence"`` or
    ``"brightfield"``; ``difficulty`` a ``data.Difficulty``.
    """
    signal, clutter = _stain(rng, labels, depth, bright, ghosts, difficulty)
    illumination = _illumination(rng, size=labels.shape[0], strength=difficulty.illumination)
    noise = _unit_noise(rng, labels.shape)
    if style == "fluorescence":
        _fluorescence(rng, signal, clutter, illumination, noise, out)
    else:
        _brightfield(rng, signal, clutter, illumination, noise, out)


def _stain(rng, labels, depth, bright, ghosts, difficulty) -> tuple[np.ndarray, np.ndarray]:
    """The dye or stain: ``(signal, clutter)``, ``(H, W)`` float32 each. ``signal`` is the
    nuclei (in focus and out of focus) and the debris, ``clutter`` the textured background."""
    size = labels.shape[0]
    coarse = _unit_noise(rng, (size // 2 + 1, size // 2 + 1)) * np.float32(0.3) + np.float32(1)
    flatness = rng.uniform(0.05, 0.5)  # how much a nucleus darkens towards its outline
    # dye: bright * (1 - flatness * depth**2) * texture, pixel (y, x)'s coarse[y // 2, x // 2]
    signal = (1 - flatness * depth * depth) * bright
    texture = np.repeat(coarse, 2, axis=1)[:, :size]
    signal[0::2] *= texture[: (size + 1) // 2]
    signal[1::2] *= texture[: size // 2]
    signal += _debris(rng, size, difficulty.debris)
    signal = ndimage.gaussian_filter(signal, rng.uniform(0.6, 2.0), truncate=2.5)  # focus
    # out of focus, on the coarse grid: the unlabelled nuclei of another focal plane and the
    # halo of cytoplasm or tissue around the nuclei
    cells = max(size // COARSE, 2)  # the share of nucleus pixels in each cell of the grid
    step = size // cells
    halo = block_reduce(labels[: cells * step, : cells * step] > 0, (step, step), np.mean,
                        func_kwargs={"dtype": np.float32})
    coarse = np.stack([ndimage.gaussian_filter(field, rng.uniform(*sigmas), truncate=2.5)
                       for field, sigmas in ((ghosts, (0.6, 0.9)), (halo, (0.4, 0.8)))])
    matrix = _interpolation_matrix(size, coarse.shape[1])
    ghosts, clutter = matrix @ coarse @ matrix.T
    signal += ghosts
    clutter = np.minimum(clutter * 2, 1) * 0.6 + np.maximum(_smooth_field(rng, size, 12) * 0.25
                                                            + 0.4, 0)
    clutter *= rng.uniform(0.03, 0.15) * difficulty.background
    return signal, clutter


def _fluorescence(rng, signal, clutter, illumination, noise, out) -> None:
    """Bright nuclei on black, grey or tinted, into ``out`` ``(H, W, 3)`` uint8."""
    tint = np.ones(3) if rng.random() < 0.6 else rng.uniform(0.2, 1.0, 3)
    gain = rng.uniform(0.35, 0.6)  # the median nucleus; bright ones saturate
    # (a dark offset + gain (signal + clutter)) illumination, then shot and read noise
    value = ((signal + clutter) * gain + rng.uniform(0.02, 0.15)) * illumination
    value += np.sqrt(np.abs(value) + 0.05) * (noise * rng.uniform(0.01, 0.07))
    for channel, t in enumerate(tint):
        out[..., channel] = _to_uint8(value * np.float32(255 * t / tint.max()))


def _brightfield(rng, signal, clutter, illumination, noise, out) -> None:
    """Light through a stained sample (Beer-Lambert), haematoxylin-like nuclei on eosin-like
    tissue, into ``out`` ``(H, W, 3)`` uint8."""
    stain = np.array([0.65, 0.70, 0.29]) * rng.uniform(0.8, 1.25, 3)
    counter = np.array([0.07, 0.99, 0.11])  # eosin-like counterstain of the tissue
    density = signal * rng.uniform(0.9, 1.6)
    tissue = clutter * 4 + rng.uniform(0.05, 0.25)
    light = illumination * 234 + noise * rng.uniform(1, 5)
    for channel, (s, c) in enumerate(zip(stain, counter, strict=True)):
        plane = np.exp(density * -np.float32(s) - tissue * np.float32(c)) * light
        out[..., channel] = _to_uint8(plane)


def _to_uint8(plane: np.ndarray) -> np.ndarray:
    """``plane`` (float32) clipped to [0, 255] and rounded to uint8."""
    return (np.clip(plane, 0, 255) + 0.5).astype(np.uint8)
