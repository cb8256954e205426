"""How fast does the synthetic nuclei generator make images, on one core?

    python benchmarks/make_nuclei.py [--size 256] [--n 200] [--repeats 5]

Prints images/s (median of the repeats, wall clock and process CPU time) for each size, with
the machine it ran on. Goal (issue 2): at least 200 images/s of 256x256 on one core. The
generator is pure NumPy/SciPy and single-threaded; the BLAS/OpenMP pools are pinned to one
thread so the number is per core.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402

from unet_course.data import make_nuclei  # noqa: E402


def measure(n: int, size: int, repeats: int) -> tuple[float, float]:
    make_nuclei(4, size=size, seed=99)  # warm-up
    wall, cpu = [], []
    for r in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        make_nuclei(n, size=size, seed=r)
        wall.append(n / (time.perf_counter() - t0))
        cpu.append(n / (time.process_time() - c0))
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--n", type=int, default=200, help="images per timed call")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"Python {platform.python_version()}, NumPy {np.__version__}, SciPy {scipy.__version__}")
    print(f"{'size':>6} {'images/s (wall)':>16} {'images/s (cpu)':>15}")
    for size in args.sizes:
        n = max(8, args.n * 256 * 256 // (size * size))
        wall, cpu = measure(n, size, args.repeats)
        print(f"{size:>6} {wall:>16.0f} {cpu:>15.0f}")


if __name__ == "__main__":
    main()
