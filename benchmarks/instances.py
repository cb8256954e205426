"""How fast are post-processing and scoring, on one core? (issue 6)

    python benchmarks/instances.py [--repeats 5] [--images 4] [--out benchmarks/results/instances.md]

For 256x256 and 1024x1024 synthetic slides (``make_nuclei``, about 31 nuclei per 256x256, so
about 500 at 1024x1024; plus a crowded 1024x1024 case with about 2000) it times:

- ``label_instances`` on a realistic probability map (the true mask blurred, with noise), with
  ``components``, ``watershed`` (distance-transform seeds) and ``watershed`` on a three-class
  (background / interior / boundary) map;
- ``dsb_score`` of the truth against that watershed result, and against an unrelated slide
  with as many nuclei (the goal case: 1024x1024, 500 nuclei each, under 50 ms);
- ``unet_weight_map`` (the paper's border weights) of the truth.

Each number is the median over ``--repeats`` passes over ``--images`` slides, as images/s and
ms per image (wall clock). BLAS / OpenMP pools are pinned to one thread and the process to one
CPU, so the numbers are per core. Prints a Markdown table (and writes it with ``--out``).
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import skimage  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from unet_course import postprocess, scoring, targets  # noqa: E402
from unet_course.data import make_nuclei  # noqa: E402

CASES = (  # (name, size, nuclei per 256x256)
    ("256x256, ~31 nuclei", 256, (30, 32)),
    ("1024x1024, ~500 nuclei", 1024, (30, 32)),
    ("1024x1024, ~2000 nuclei", 1024, (124, 126)),
)


def _probability(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible network output: the true mask blurred, plus noise, in [0, 1] float32."""
    prob = ndi.gaussian_filter((labels > 0).astype(np.float32), 1.5)
    prob += rng.normal(0, 0.05, labels.shape).astype(np.float32)
    return np.clip(prob, 0, 1)


def _three_class(labels: np.ndarray) -> np.ndarray:
    """A (H, W, 3) probability map from the three-class targets, blurred a little."""
    onehot = np.eye(3, dtype=np.float32)[targets.three_class_targets(labels)]
    onehot = ndi.gaussian_filter(onehot, (1.0, 1.0, 0))
    return onehot / onehot.sum(-1, keepdims=True)


def _per_image(fn: Callable[[int], object], n: int, repeats: int) -> float:
    """Median over ``repeats`` of (seconds for fn(0) ... fn(n-1)) / n."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        times.append((time.perf_counter() - start) / n)
    return statistics.median(times)


def bench_case(size: int, nuclei: tuple[int, int], n: int, repeats: int) -> dict[str, float]:
    """Seconds per image of each step on ``n`` slides of ``size`` pixels."""
    _, labels = make_nuclei(2 * n, size=size, seed=6, nuclei=nuclei)
    truth, others = labels[:n], labels[n:]
    rng = np.random.default_rng(0)
    probs = [_probability(t, rng) for t in truth]
    threes = [_three_class(t) for t in truth]
    preds = [postprocess.label_instances(p, method="watershed") for p in probs]
    li = postprocess.label_instances
    return {
        "objects": float(np.mean([t.max() for t in truth])),
        "components": _per_image(lambda i: li(probs[i], method="components"), n, repeats),
        "watershed": _per_image(lambda i: li(probs[i], method="watershed"), n, repeats),
        "watershed, 3 classes": _per_image(lambda i: li(threes[i], method="watershed"), n, repeats),
        "dsb_score vs prediction": _per_image(
            lambda i: scoring.dsb_score(truth[i], preds[i]), n, repeats
        ),
        "dsb_score vs other slide": _per_image(
            lambda i: scoring.dsb_score(truth[i], others[i]), n, repeats
        ),
        "unet_weight_map": _per_image(lambda i: targets.unet_weight_map(truth[i]), n, repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--out", help="also write the Markdown table to this file")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs "
        f"(pinned to 1), Python {platform.python_version()}, NumPy {np.__version__}, "
        f"SciPy {scipy.__version__}, scikit-image {skimage.__version__}.",
        f"Median of {args.repeats} passes over {args.images} slides; wall clock per image.",
        "",
        "| slide | objects | step | images/s | ms/image |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, size, nuclei in CASES:
        result = bench_case(size, nuclei, args.images, args.repeats)
        objects = result.pop("objects")
        for step, seconds in result.items():
            lines.append(
                f"| {name} | {objects:.0f} | {step} | {1 / seconds:.1f} | {seconds * 1e3:.1f} |"
            )
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
