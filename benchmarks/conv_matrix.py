"""Benchmark: convolution as a dense matrix, as a sparse (CSR) matrix, and as Keras' Conv2D.

For each square single-channel input size it prints the build time and memory of the dense and
the sparse convolution matrix of a 3x3 kernel ('same' padding), the time of one matrix-vector
product with each, and the time of ``keras.layers.Conv2D`` on the same image. Memory is the
matrix's own bytes: ``nbytes`` (dense) and ``data + indices + indptr`` (sparse). Times are the
median of ``--repeats`` runs of ``time.perf_counter``. The dense matrix is skipped (and the bytes
it would need printed) above ``--max-dense-mib``.

    python benchmarks/conv_matrix.py                 # 8x8 ... 512x512, one thread
    python benchmarks/conv_matrix.py --sizes 8 16 32 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import sys


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _fmt_time(t: float | None) -> str:
    if t is None:
        return "—"
    if t < 1e-3:
        return f"{t * 1e6:.0f} µs"
    return f"{t * 1e3:.2f} ms" if t < 1 else f"{t:.2f} s"


def measure(size: int, repeats: int, max_dense_bytes: int) -> dict:
    """One row: build times, bytes and product times for a ``size x size`` image."""
    import keras
    import numpy as np

    from unet_course.lessons import conv
    from unet_course.lessons.conv_cost import median_time as _median_time

    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 3, 1, 1)).astype("float32")
    x = rng.random((size, size, 1), dtype="float32")
    row = {"size": size, "pixels": size * size}
    row["sparse_build"], s = _median_time(
        lambda: conv.conv_matrix(kernel, x.shape, padding="same", sparse=True), repeats
    )
    row["sparse_bytes"] = s.data.nbytes + s.indices.nbytes + s.indptr.nbytes
    row["sparse_matvec"], _ = _median_time(lambda: s @ x.ravel(), repeats)
    row["dense_bytes"] = (size * size) ** 2 * kernel.itemsize
    row["dense_build"] = row["dense_matvec"] = None
    if row["dense_bytes"] <= max_dense_bytes:
        row["dense_build"], d = _median_time(
            lambda: conv.conv_matrix(kernel, x.shape, padding="same"), repeats
        )
        row["dense_matvec"], _ = _median_time(lambda: d @ x.ravel(), repeats)
        del d
    layer = keras.layers.Conv2D(1, 3, padding="same", use_bias=False)
    layer.build((1, size, size, 1))
    layer.set_weights([kernel])
    batch = x[None]
    keras.ops.convert_to_numpy(layer(batch))  # warm-up
    row["conv2d"], _ = _median_time(lambda: keras.ops.convert_to_numpy(layer(batch)), repeats)
    row["conv2d_bytes"] = kernel.nbytes
    return row


def machine_line() -> str:
    import keras
    import numpy as np
    import scipy

    return (
        f"{platform.platform()} · {platform.processor() or platform.machine()} · "
        f"{os.cpu_count()} CPU cores visible · Python {platform.python_version()} · "
        f"NumPy {np.__version__} · SciPy {scipy.__version__} · Keras {keras.__version__} "
        f"({keras.backend.backend()} backend)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-dense-mib", type=float, default=256.0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1 or min(args.sizes) < 3:
        parser.error("--repeats and --threads must be >= 1 and every size >= 3")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    print(f"Machine: {machine_line()} · {args.threads} thread(s)\n")
    print(
        "| input | pixels | dense bytes | dense build | dense C@x | sparse bytes "
        "| sparse build | sparse C@x | Conv2D call |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in args.sizes:
        r = measure(size, args.repeats, int(args.max_dense_mib * 2**20))
        dense_note = "" if r["dense_build"] is not None else " (not built)"
        print(
            f"| {size}x{size} | {r['pixels']:,} | {_fmt_bytes(r['dense_bytes'])}{dense_note} "
            f"| {_fmt_time(r['dense_build'])} | {_fmt_time(r['dense_matvec'])} "
            f"| {_fmt_bytes(r['sparse_bytes'])} | {_fmt_time(r['sparse_build'])} "
            f"| {_fmt_time(r['sparse_matvec'])} | {_fmt_time(r['conv2d'])} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
