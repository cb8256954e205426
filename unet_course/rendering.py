"""Rendering the synthetic slides: light, stain, blur, noise and colour (``data.make_nuclei``).

What belongs here: the private drawing helpers that turn a label map into a microscope-like
image (``render``), and the cheap smooth random fields they use. ``unet_course.data`` places
the nuclei and calls ``render``; nothing here is public API beyond that.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

COARSE = 8  # out-of-focus light and the cells' halo are drawn on an 8x coarser grid


def _unit_noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Zero-mean, unit-variance float32 noise; uniform, which is several times faster to draw
    than Gaussian and looks the same once blurred or added to an image."""
    noise = rng.random(shape, dtype=np.float32)
    noise -= 0.5
    noise *= np.float32(np.sqrt(12.0))
    return noise


@functools.lru_cache(maxsize=32)
def _interpolation_matrix(size: int, cells: int) -> np.ndarray:
    """``(size, cells)`` float32 matrix ``M`` such that ``M @ A @ M.T`` resizes a ``(cells,
    cells)`` array ``A`` to ``(size, size)`` by linear interpolation (cell centres aligned)."""
    position = np.clip((np.arange(size) + 0.5) * cells / size - 0.5, 0, cells - 1)
    left = np.minimum(np.floor(position).astype(int), max(cells - 2, 0))
    frac = (position - left).astype(np.float32)
    matrix = np.zeros((size, cells), dtype=np.float32)
    matrix[np.arange(size), left] = 1 - frac
    if cells > 1:
        matrix[np.arange(size), left + 1] += frac
    return matrix


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth zero-mean random field, ``(size, size)`` float32: ``cells x cells`` noise,
    interpolated up. Its features are about ``size / cells`` pixels wide."""
    matrix = _interpolation_matrix(size, cells)
    return matrix @ _unit_noise(rng, (cells, cells)) @ matrix.T


def _coarse_mean(field: np.ndarray, factor: int) -> np.ndarray:
    """Means of ``factor x factor`` blocks of a ``(S, S)`` array (the last partial block is
    left out): ``(S // factor, S // factor)``."""
    cells = max(field.shape[0] // factor, 2)
    step = field.shape[0] // cells
    used = field[: cells * step, : cells * step].reshape(cells, step, cells, step)
    return used.mean(axis=(1, 3), dtype=np.float32)


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
    light = _smooth_field(rng, size, 3)
    light *= np.float32(0.1 * strength)
    light += rows[:, None]
    light += cols[None, :]
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
    """Draw a microscope-like image of a label map into ``out``: ``(H, W, 3) uint8``.

    ``bright`` holds each nucleus pixel's relative brightness, ``ghosts`` the blurred
    out-of-focus nuclei.
    """
    size = labels.shape[0]
    coarse = _unit_noise(rng, (size // 2 + 1, size // 2 + 1))
    coarse *= np.float32(0.3)
    coarse += np.float32(1)  # 1 +- 0.52: a mottled stain, never negative
    texture = np.repeat(np.repeat(coarse, 2, 0), 2, 1)[:size, :size]
    flatness = rng.uniform(0.05, 0.5)  # how much a nucleus darkens towards its outline
    # Dye or stain per pixel: a level per nucleus, densest at the centre, mottled inside.
    signal = bright * (1 - flatness * depth * depth) * texture
    signal += _debris(rng, size, difficulty.debris)
    signal = ndimage.gaussian_filter(signal, rng.uniform(0.6, 2.0), truncate=2.5)  # focus
    # Out of focus, on the coarse grid, blurred and interpolated up together: the unlabelled
    # nuclei of another focal plane (5-7 px blur) and the halo of cytoplasm (fluorescence) or
    # tissue (bright-field) around the nuclei.
    halo = _coarse_mean((labels > 0).astype(np.float32), COARSE)
    coarse = np.stack([ndimage.gaussian_filter(ghosts, rng.uniform(0.6, 0.9), truncate=2.5),
                       ndimage.gaussian_filter(halo, rng.uniform(0.4, 0.8), truncate=2.5)])
    matrix = _interpolation_matrix(size, coarse.shape[1])
    ghosts, cells = matrix @ coarse @ matrix.T
    signal += ghosts
    clutter = 0.6 * np.minimum(cells * 2, 1) + np.maximum(0.4 + 0.25 * _smooth_field(rng, size, 12), 0)
    clutter *= rng.uniform(0.03, 0.15) * difficulty.background
    illumination = _illumination(rng, size, difficulty.illumination)
    noise = _unit_noise(rng, (size, size))
    if style == "fluorescence":
        tint = np.ones(3) if rng.random() < 0.6 else rng.uniform(0.2, 1.0, 3)
        gain = rng.uniform(0.35, 0.6)  # the median nucleus; bright ones saturate
        # A dark offset (camera, out-of-focus haze) and shot + read noise as strong as in dim
        # real slides, where the background is a quarter of a dim nucleus and grainy.
        value = (rng.uniform(0.02, 0.15) + gain * (signal + clutter)) * illumination
        value += rng.uniform(0.01, 0.07) * noise * np.sqrt(np.abs(value) + 0.05)
        if np.all(tint == tint[0]):  # grey: one plane, three times
            out[...] = (np.clip(value * np.float32(255), 0, 255) + 0.5)[..., None]
            return
        planes = [value * np.float32(255 * t / tint.max()) for t in tint]
    else:  # bright-field: light through a stained sample (Beer-Lambert), haematoxylin-like
        stain = np.array([0.65, 0.70, 0.29]) * rng.uniform(0.8, 1.25, 3)
        counter = np.array([0.07, 0.99, 0.11])  # eosin-like counterstain of the tissue
        density = rng.uniform(0.9, 1.6) * signal
        tissue = rng.uniform(0.05, 0.25) + 4 * clutter
        light = 234 * illumination + rng.uniform(1, 5) * noise
        planes = [
            np.exp(-np.float32(s) * density - np.float32(c) * tissue) * light
            for s, c in zip(stain, counter, strict=True)
        ]
    for channel, plane in enumerate(planes):
        out[..., channel] = np.clip(plane, 0, 255) + 0.5
