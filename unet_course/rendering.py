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


def _coarse_mean(mask: np.ndarray, factor: int) -> np.ndarray:
    """Share of True in each ``factor x factor`` block of a ``(S, S)`` bool array (the last
    partial block is left out): ``(S // factor, S // factor)`` float32."""
    cells = max(mask.shape[0] // factor, 2)
    step = mask.shape[0] // cells
    used = mask[: cells * step, : cells * step]
    # Whole rows of a block row first (fast), then the short runs along each row.
    rows = used.reshape(cells, step, cells * step).sum(axis=1, dtype=np.int32)
    count = rows.reshape(cells, cells, step).sum(axis=2, dtype=np.int32)
    return count.astype(np.float32) / np.float32(step * step)


def _blur(field: np.ndarray, sigma: float) -> np.ndarray:
    """``ndimage.gaussian_filter(field, sigma, truncate=2.5)`` of a 2-D float32 array, the
    same numbers with less overhead: SciPy's kernel, computed as SciPy does, applied along
    each axis by ``correlate1d``."""
    radius = int(2.5 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 / (sigma * sigma) * x**2)
    kernel = (kernel / kernel.sum())[::-1]
    out = ndimage.correlate1d(field, kernel, axis=0, output=np.empty_like(field))
    return ndimage.correlate1d(out, kernel, axis=1, output=out)


@functools.lru_cache(maxsize=32)
def _ramp(size: int) -> np.ndarray:
    """``(size,)`` float32 from -0.5 to 0.5, read-only."""
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    ramp.flags.writeable = False
    return ramp


def _illumination(rng: np.random.Generator, size: int, strength: float) -> np.ndarray:
    """Uneven lighting, ``(size, size)`` float32 around 1: a tilt, a vignette darkening towards
    an off-centre rim, and a gentle low-frequency ripple, all scaled by ``strength``."""
    ramp = _ramp(size)
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

    ``bright`` holds each nucleus pixel's relative brightness, ``ghosts`` the out-of-focus
    nuclei on the coarse grid. The arrays are ``(H, W)`` float32 and worked on in place, one
    pass each, to keep the whole slide in cache.
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
    coarse = _unit_noise(rng, (size // 2 + 1, size // 2 + 1))
    coarse *= np.float32(0.3)
    coarse += np.float32(1)  # 1 +- 0.52: a mottled stain, never negative
    flatness = rng.uniform(0.05, 0.5)  # how much a nucleus darkens towards its outline
    # Dye or stain per pixel: a level per nucleus, densest at the centre, mottled inside:
    # bright * (1 - flatness * depth**2) * texture, the texture pixel (y, x) coarse[y//2, x//2].
    signal = flatness * depth
    signal *= depth
    np.subtract(1, signal, out=signal)
    signal *= bright
    texture = np.repeat(coarse, 2, axis=1)[:, :size]
    signal[0::2] *= texture[: (size + 1) // 2]
    signal[1::2] *= texture[: size // 2]
    signal += _debris(rng, size, difficulty.debris)
    signal = _blur(signal, rng.uniform(0.6, 2.0))  # focus
    # Out of focus, on the coarse grid, blurred and interpolated up together: the unlabelled
    # nuclei of another focal plane (5-7 px blur) and the halo of cytoplasm (fluorescence) or
    # tissue (bright-field) around the nuclei.
    halo = _coarse_mean(labels > 0, COARSE)
    coarse = np.stack([_blur(ghosts, rng.uniform(0.6, 0.9)), _blur(halo, rng.uniform(0.4, 0.8))])
    matrix = _interpolation_matrix(size, coarse.shape[1])
    ghosts, clutter = matrix @ coarse @ matrix.T
    signal += ghosts
    # clutter = 0.6 min(2 halo, 1) + max(0.4 + 0.25 field, 0), field a smooth random one
    clutter *= 2
    np.minimum(clutter, 1, out=clutter)
    clutter *= 0.6
    field = _smooth_field(rng, size, 12)
    field *= 0.25
    field += 0.4
    clutter += np.maximum(field, 0, out=field)
    clutter *= rng.uniform(0.03, 0.15) * difficulty.background
    return signal, clutter


def _fluorescence(rng, signal, clutter, illumination, noise, out) -> None:
    """Bright nuclei on black, grey or tinted, into ``out`` ``(H, W, 3) uint8``; the float32
    inputs are overwritten."""
    tint = np.ones(3) if rng.random() < 0.6 else rng.uniform(0.2, 1.0, 3)
    gain = rng.uniform(0.35, 0.6)  # the median nucleus; bright ones saturate
    # A dark offset (camera, out-of-focus haze) and shot + read noise as strong as in dim
    # real slides, where the background is a quarter of a dim nucleus and grainy:
    # value = (offset + gain (signal + clutter)) illumination + spread noise sqrt(|value| + 0.05)
    value = signal
    value += clutter
    value *= gain
    value += rng.uniform(0.02, 0.15)
    value *= illumination
    noise *= rng.uniform(0.01, 0.07)
    shot = np.abs(value, out=clutter)
    shot += 0.05
    shot = np.sqrt(shot, out=shot)
    shot *= noise
    value += shot
    if np.all(tint == tint[0]):  # grey: one plane, three times
        value *= np.float32(255)
        grey = _to_uint8(value)
        for channel in range(3):
            out[..., channel] = grey
        return
    for channel, t in enumerate(tint):
        np.multiply(value, np.float32(255 * t / tint.max()), out=illumination)
        out[..., channel] = _to_uint8(illumination)


def _brightfield(rng, signal, clutter, illumination, noise, out) -> None:
    """Light through a stained sample (Beer-Lambert), haematoxylin-like nuclei on eosin-like
    tissue, into ``out`` ``(H, W, 3) uint8``; the float32 inputs are overwritten."""
    stain = np.array([0.65, 0.70, 0.29]) * rng.uniform(0.8, 1.25, 3)
    counter = np.array([0.07, 0.99, 0.11])  # eosin-like counterstain of the tissue
    density = signal
    density *= rng.uniform(0.9, 1.6)
    tissue = clutter
    tissue *= 4
    tissue += rng.uniform(0.05, 0.25)
    light = illumination
    light *= 234
    noise *= rng.uniform(1, 5)
    light += noise
    for channel, (s, c) in enumerate(zip(stain, counter, strict=True)):
        # exp(-s density - c tissue) light
        plane = np.multiply(density, -np.float32(s), out=noise)
        plane -= np.multiply(tissue, np.float32(c))
        plane = np.exp(plane, out=plane)
        plane *= light
        out[..., channel] = _to_uint8(plane)


def _to_uint8(plane: np.ndarray) -> np.ndarray:
    """``plane`` (float32, overwritten) clipped to [0, 255] and rounded to uint8."""
    np.clip(plane, 0, 255, out=plane)
    plane += 0.5
    return plane.astype(np.uint8)
