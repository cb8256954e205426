"""How fast does the U-Net train and predict, and can the data pipeline keep up? (issue 5)

    python benchmarks/train_throughput.py                       # seed U-Net, 256x256
    python benchmarks/train_throughput.py --models seed paper   # + the paper's U-Net, 572x572
    KERAS_BACKEND=jax python benchmarks/train_throughput.py     # the same on JAX
    python benchmarks/train_throughput.py --steps 20 --out benchmarks/results/train_gpu.md

For each model and configuration it reports:

- training images/s: ``model.train_on_batch`` on one fixed batch held in memory (so the data
  pipeline is not counted), timed over ``--steps`` steps after ``--warmup`` steps (the first
  steps compile the graph);
- inference images/s: ``model.predict_on_batch`` the same way;
- achieved FLOP/s: the model's FLOPs counted from its convolution layers,
  ``2 * H_out * W_out * kh * kw * C_in * C_out`` per ``Conv2D`` and
  ``2 * H_in * W_in * kh * kw * C_in * C_out`` per ``Conv2DTranspose`` (pooling, activations,
  concatenation and the optimizer are left out), times 3 for a training step (forward, and a
  backward pass that costs about twice the forward), against the device's peak for that
  precision (``--peak-tflops`` overrides the built-in table / CPU estimate);
- the data pipeline's own images/s (best and median of 5 measurements):
  ``SegmentationSequence`` with the default augmentation (flips, rotations, random crops,
  brightness/contrast), and with the paper's elastic deformation added, built by 1 thread and
  by as many threads as there are cores (``--pipeline-workers``), as ``PyDataset(workers=n)``
  does; the ratio to the best training images/s on this device shows whether the device would
  be starved (below 1: it waits; add ``workers``). ``--pipeline-only`` measures only this.

Configurations: ``float32``; ``mixed`` (``mixed_bfloat16`` on a CPU and on GPUs with compute
capability >= 8, else ``mixed_float16``) without XLA; ``mixed_xla``. On JAX every step is
XLA-compiled anyway, so ``float32`` and ``mixed`` already use XLA there and ``mixed`` is the
same as ``mixed_xla`` (it is skipped). Keras only: runs on the TensorFlow and JAX backends.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from unet_course import data, losses, model, sequence, train  # noqa: E402
from unet_course.runtime import gpu_devices  # noqa: E402

#: Dense peak TFLOP/s, (float32 without tensor cores, 16-bit tensor cores), from the vendors'
#: data sheets (SXM versions). Matched against the GPU's name, first match wins.
GPU_PEAKS = {
    "H200": (67.0, 989.0),
    "H100": (67.0, 989.0),
    "A100": (19.5, 312.0),
    "L40S": (91.6, 362.0),
    "L4": (30.3, 121.0),
    "A10": (31.2, 125.0),
    "T4": (8.1, 65.0),
    "V100": (15.7, 125.0),
    "RTX 4090": (82.6, 165.0),
    "RTX 3090": (35.6, 71.0),
}
MODELS = {
    # name: (builder, input shape, default batch on CPU, default batch on GPU)
    "seed": (lambda shape: model.seed_unet(shape), (256, 256, 3), 4, 32),
    "paper": (lambda shape: model.paper_unet(shape), (572, 572, 1), 1, 4),
}
CONFIGS = ("float32", "mixed", "mixed_xla")


# --------------------------------------------------------------------------- FLOPs and peaks


def conv_flops(net: keras.Model) -> int:
    """Forward-pass FLOPs of one image through ``net``'s convolutions (fixed input size)."""
    total = 0
    for layer in _layers(net):
        if not isinstance(layer, keras.layers.Conv2D | keras.layers.Conv2DTranspose):
            continue
        kh, kw = layer.kernel_size
        c_in, c_out = layer.input.shape[-1], layer.filters
        if isinstance(layer, keras.layers.Conv2DTranspose):
            h, w = layer.input.shape[1:3]
        else:
            h, w = layer.output.shape[1:3]
        total += 2 * h * w * kh * kw * c_in * c_out
    return int(total)


def cpu_peak_tflops(precision: str = "float32") -> tuple[float, str]:
    """Estimated peak of this CPU: cores x clock x FLOP/cycle.

    32 float32 FLOP/cycle per core (two 256-bit FMA units, as on AMD Zen 3/4 and most Intel
    cores); 64 for bfloat16 where the CPU has the AVX-512 BF16 dot-product instructions
    (``avx512_bf16``), which oneDNN uses for ``mixed_bfloat16``.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mhz, flags = 2500.0, ""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
        mhz = float(next(ln for ln in text.splitlines() if ln.startswith("cpu MHz")).split(":")[1])
        flags = next(ln for ln in text.splitlines() if ln.startswith("flags"))
    except (OSError, StopIteration, ValueError):
        pass
    per_cycle = 64 if precision == "mixed_bfloat16" and "avx512_bf16" in flags else 32
    peak = cores * mhz * 1e6 * per_cycle / 1e12
    how = f"{cores} cores x {mhz / 1000:.2f} GHz x {per_cycle} FLOP/cycle"
    return peak, f"CPU estimate for {precision}: {how} = {peak * 1000:.0f} GFLOP/s"


def peak_tflops(precision: str, override: float | None) -> tuple[float | None, str]:
    """The peak to compare against, and where it comes from."""
    if override:
        return override, f"{override} TFLOP/s (given)"
    if not gpu_devices():
        return cpu_peak_tflops(precision)
    name = gpu_name()
    for key, (fp32, half) in GPU_PEAKS.items():
        if key in name:
            kind = "float32 (no tensor cores)" if precision == "float32" else "16-bit tensor cores"
            return (fp32 if precision == "float32" else half), f"{key} data sheet, {kind}"
    return None, f"unknown GPU {name!r}: pass --peak-tflops"


def gpu_name() -> str:
    """A readable name of the first GPU (``nvidia-smi`` names where the backend gives ids)."""
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpu = tf.config.list_physical_devices("GPU")[0]
            return tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
        if backend == "jax":
            import jax

            return next(d.device_kind for d in jax.devices() if d.platform == "gpu")
    except Exception:
        pass
    return ", ".join(gpu_devices())


# --------------------------------------------------------------------------- measurements


def _timed(fn, steps: int, warmup: int) -> float:
    """Seconds per call of ``fn`` over ``steps`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def make_model(name: str, config: str) -> tuple[keras.Model, train.Accelerator]:
    """The model ``name`` built and compiled for ``config`` (float32 / mixed / mixed_xla)."""
    builder, shape, *_ = MODELS[name]
    auto = train.choose_accelerator("auto")
    mixed = auto.precision if auto.gpus else "mixed_bfloat16"
    precision = "float32" if config == "float32" else mixed
    xla = config == "mixed_xla" or keras.backend.backend() == "jax"
    accel = train.choose_accelerator(precision, xla=xla)
    net = train.build_model(lambda: builder(shape), accel)
    loss = losses.BCEDiceLoss() if name == "seed" else keras.losses.SparseCategoricalCrossentropy()
    net.compile(optimizer=keras.optimizers.Adam(1e-4), loss=loss, jit_compile=accel.jit_compile)
    return net, accel


def fake_batch(net: keras.Model, name: str, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed batch in memory: images in the model's value range and matching targets."""
    rng = np.random.default_rng(0)
    _, shape, *_ = MODELS[name]
    x = rng.integers(0, 256, (batch, *shape)).astype(np.float32)
    out_h, out_w = net.output_shape[1:3]
    if name == "seed":
        return x, (rng.random((batch, out_h, out_w, 1)) < 0.2).astype(np.float32)
    return x / 255, (rng.random((batch, out_h, out_w)) < 0.2).astype(np.int32)


def bench_model(name: str, config: str, batch: int, steps: int, warmup: int, peak) -> dict:
    keras.utils.set_random_seed(0)
    net, accel = make_model(name, config)
    x, y = fake_batch(net, name, batch)
    train_s = _timed(lambda: net.train_on_batch(x, y), steps, warmup)
    infer_s = _timed(lambda: net.predict_on_batch(x), steps, warmup)
    flops = conv_flops(net)
    peak_value, peak_note = peak_tflops(accel.precision, peak)
    row = dict(model=name, config=config, precision=accel.precision, xla=accel.jit_compile,
               batch=batch, train_ips=batch / train_s, infer_ips=batch / infer_s,
               gflops=flops / 1e9, peak=peak_value, peak_note=peak_note)
    row["train_tflops"] = 3 * flops * row["train_ips"] / 1e12
    row["infer_tflops"] = flops * row["infer_ips"] / 1e12
    keras.backend.clear_session()
    return row


def bench_pipeline(size: int, batch: int, batches: int, elastic: bool, workers: int = 1,
                   repeats: int = 5) -> tuple[float, float]:
    """Best and median images/s of the augmented ``SegmentationSequence`` at ``size``.

    Batches are built from 64 synthetic nuclei images of ``size``, as uint8 (what
    ``recipe.make_sequences`` serves), by ``workers`` threads at once (what
    ``PyDataset(workers=n)`` does with ``use_multiprocessing=False``; 1: one after another in
    this process); each of ``repeats`` measurements times ``batches * workers`` batches (a
    third as many with ``elastic``).
    """
    from concurrent.futures import ThreadPoolExecutor

    images, labels = data.make_nuclei(64, size=size, seed=0)
    seq = sequence.SegmentationSequence(
        images, labels, batch_size=batch, size=size, augment=True, seed=0, image_dtype="uint8",
        augment_options={"elastic": True} if elastic else None,
    )
    seq[0]  # warm-up (first call allocates)
    count = (max(1, batches // 3) if elastic else batches) * workers
    rates = []
    with ThreadPoolExecutor(workers) as pool:
        for _ in range(repeats):
            start = time.perf_counter()
            served = sum(len(b[0]) for b in pool.map(lambda i: seq[i % len(seq)], range(count)))
            rates.append(served / (time.perf_counter() - start))
    return max(rates), float(np.median(rates))


def _layers(net) -> list:
    """Every layer of ``net``, nested models included (public Keras API only)."""
    found = []
    for layer in net.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(_layers(layer))
    return found


# --------------------------------------------------------------------------- report


def header() -> list[str]:
    """Device, backend and versions, for the results file."""
    from importlib import metadata

    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "-"

    gpus = gpu_devices()
    device = gpu_name() if gpus else f"CPU ({platform.processor() or platform.machine()}, " \
        f"{len(os.sched_getaffinity(0))} cores)"
    return [
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- device: {device}",
        f"- backend: {keras.backend.backend()}; keras {version('keras')}, tensorflow "
        f"{version('tensorflow')}, jax {version('jax')}, numpy {version('numpy')}, "
        f"Python {platform.python_version()}",
        f"- command: `{' '.join(['python', *sys.argv])}`",
    ]


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| model | config | precision | XLA | batch | train img/s | infer img/s "
        "| GFLOP/img (fwd) | train TFLOP/s | infer TFLOP/s | peak TFLOP/s | % of peak (train) |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        share = f"{100 * r['train_tflops'] / r['peak']:.1f}" if r["peak"] else "-"
        peak = f"{r['peak']:.3f}" if r["peak"] else "-"
        lines.append(
            f"| {r['model']} | {r['config']} | {r['precision']} | {'on' if r['xla'] else 'off'} "
            f"| {r['batch']} | {r['train_ips']:.2f} | {r['infer_ips']:.2f} | {r['gflops']:.1f} "
            f"| {r['train_tflops']:.3f} | {r['infer_tflops']:.3f} | {peak} | {share} |"
        )
    return lines


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=tuple(MODELS), default=["seed"])
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS))
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: 4 (seed) / 1 (paper) on CPU, 32 / 4 on a GPU")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compile)")
    parser.add_argument("--pipeline-batches", type=int, default=8,
                        help="batches per pipeline measurement (a third of it with elastic)")
    parser.add_argument("--pipeline-batch-size", type=int, default=32)
    parser.add_argument("--pipeline-workers", type=int, nargs="+", default=None,
                        help="threads building batches at once (default: 1 and the CPU count)")
    parser.add_argument("--pipeline-only", action="store_true",
                        help="measure only the data pipeline (no model, no training rate)")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--out", default=None, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    if min(args.steps, args.pipeline_batches, args.pipeline_batch_size) < 1 or args.warmup < 0:
        parser.error("--steps and --pipeline-batches must be >= 1, --warmup >= 0")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    if args.pipeline_workers is None:
        args.pipeline_workers = sorted({1, len(os.sched_getaffinity(0))})
    if min(args.pipeline_workers) < 1:
        parser.error("--pipeline-workers must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    on_gpu = bool(gpu_devices())
    rows, pipe = [], []
    for name in args.models:
        _, shape, cpu_batch, gpu_batch = MODELS[name]
        batch = args.batch_size or (gpu_batch if on_gpu else cpu_batch)
        for config in () if args.pipeline_only else args.configs:
            if config == "mixed" and keras.backend.backend() == "jax" and "mixed_xla" in args.configs:
                continue  # identical on JAX, which always compiles with XLA
            rows.append(bench_model(name, config, batch, args.steps, args.warmup, args.peak_tflops))
            print(table(rows[-1:])[-1], flush=True)
        best = max((r["train_ips"] for r in rows if r["model"] == name), default=float("nan"))
        for elastic in (False, True):
            for workers in args.pipeline_workers:
                top, median = bench_pipeline(shape[0], args.pipeline_batch_size,
                                             args.pipeline_batches, elastic, workers)
                kind = "+ elastic" if elastic else "flips, rot90, crop, brightness/contrast"
                ratio = "- | -" if np.isnan(best) else f"{best:.1f} | {top / best:.1f}x"
                pipe.append(f"| {name} | {shape[0]}x{shape[1]} | {kind} | {workers} | {top:.0f} "
                            f"| {median:.0f} | {ratio} |")
                print(pipe[-1], flush=True)
    report = ["## Train throughput", "", *header(), "",
              *(table(rows) if rows else ["No model measured (`--pipeline-only`)."]), "",
              *sorted({f"- peak: {r['peak_note']}" for r in rows}), "",
              f"Data pipeline: batches of {args.pipeline_batch_size}, built by 1 or more threads "
              "at once (what `PyDataset(workers=n)` does), best and median of 5 measurements:",
              "", "| model | size | augmentation | threads | pipeline img/s (best) | (median) "
              "| best train img/s | pipeline / train |",
              "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |", *pipe, ""]
    text = "\n".join(report)
    print("\n" + text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
