"""What convolution as a matrix costs: build time, memory and product time (notebook 02).

What belongs here: the timing harness that notebook 02 runs to compare the dense and the sparse
convolution matrix of :mod:`unet_course.lessons.conv` with ``keras.layers.Conv2D`` (and a small timer).
``benchmarks/conv_matrix.py`` measures the same on larger sizes. Timings are facts about one
machine and one run; nothing in the tests asserts them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median seconds of ``repeats`` calls of ``fn()`` (``time.perf_counter``) and the last result."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _conv2d_call_time(kernel: np.ndarray, img: np.ndarray, repeats: int) -> float:
    """Median seconds of one ``Conv2D`` call on ``img (H, W, 1)`` after a warm-up call."""
    import keras

    layer = keras.layers.Conv2D(1, kernel.shape[:2], padding="same", use_bias=False)
    layer.build((1, *img.shape))
    layer.set_weights([kernel])

    def call() -> np.ndarray:
        return keras.ops.convert_to_numpy(layer(img[None]))

    call()  # the first call is slow (the backend prepares the computation)
    return median_time(call, repeats)[0]


def measure_conv_costs(
    sizes: Sequence[int], dense_limit_bytes: int, repeats: int = 3, seed: int = 0
) -> list[dict[str, Any]]:
    """Build, store and apply the 3x3 'same' convolution matrix of square one-channel images.

    For each side ``n`` in ``sizes`` (input ``(n, n, 1)`` float32, a random ``(3, 3, 1, 1)``
    kernel) one row with:

    - ``n``, ``pixels`` (``n * n``), ``dense_bytes`` (``(n * n) ** 2 * 4``, the count);
    - ``dense_s``, ``dense_mv_s``, ``dense_nbytes``: median build time, ``C @ x`` time and the
      measured ``nbytes`` of the dense ``C``, or NaN / None where ``dense_bytes`` is over
      ``dense_limit_bytes`` (it is then never allocated);
    - ``sparse_s``, ``matvec_s``, ``sparse_bytes`` (``data + indices + indptr``), ``nnz``: the
      same for the CSR matrix;
    - ``conv2d_s``: median time of one ``keras.layers.Conv2D`` call on the same image.
    """
    from unet_course.lessons import conv

    if repeats < 1 or dense_limit_bytes < 0 or not sizes or min(sizes) < 3:
        raise ValueError(
            f"need sizes >= 3, repeats >= 1 and dense_limit_bytes >= 0, got sizes={sizes!r}, "
            f"repeats={repeats}, dense_limit_bytes={dense_limit_bytes}"
        )
    rng = np.random.default_rng(seed)
    kernel = rng.standard_normal((3, 3, 1, 1)).astype("float32")
    rows = []
    for n in sizes:
        img = rng.random((n, n, 1), dtype="float32")
        r: dict[str, Any] = {"n": n, "pixels": n * n, "dense_bytes": (n * n) ** 2 * 4,
                             "dense_s": np.nan, "dense_mv_s": np.nan, "dense_nbytes": None}  # fmt: skip
        build = partial(conv.conv_matrix, kernel, img.shape, padding="same")
        if r["dense_bytes"] <= dense_limit_bytes:
            r["dense_s"], dense = median_time(build, repeats)
            r["dense_nbytes"] = dense.nbytes
            r["dense_mv_s"], _ = median_time(partial(dense.dot, img.ravel()), repeats)
            del dense
        r["sparse_s"], sp = median_time(partial(build, sparse=True), repeats)
        r["sparse_bytes"] = sp.data.nbytes + sp.indices.nbytes + sp.indptr.nbytes
        r["nnz"] = sp.nnz
        r["matvec_s"], _ = median_time(partial(sp.dot, img.ravel()), repeats)
        r["conv2d_s"] = _conv2d_call_time(kernel, img, repeats)
        rows.append(r)
    return rows


def growth_exponent(pixels: Sequence[float], values: Sequence[float]) -> float:
    """The slope of ``log(values)`` against ``log(pixels)`` (least squares): ``values ∝ pixels^slope``."""
    x, y = np.log(np.asarray(pixels, float)), np.log(np.asarray(values, float))
    if x.size < 2 or not np.all(np.isfinite(y)):
        raise ValueError("need at least two positive, finite values to fit a growth exponent")
    return float(np.polyfit(x, y, 1)[0])
