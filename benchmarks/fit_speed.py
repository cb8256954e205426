"""How fast does ``model.fit`` train the recipe, against ``train_on_batch`` on the same batches,
with TensorFlow's default CPU allocator and with its pooling (BFC) allocator, and with the
batches served by one or two threads?

    python benchmarks/fit_speed.py [--epochs 3] [--out benchmarks/results/fit_speed_cpu.md]

Each configuration runs in a fresh process (the allocator is chosen when TensorFlow starts):
the default recipe's model, compiled as ``recipe.compile_model`` does, trained for
``--epochs`` passes of 30 batches of 8 crops of 128x128 from ``recipe.make_sequences`` by
``model.fit`` (no validation), or by ``train_on_batch`` on 30 batches built beforehand. It
reports seconds per step, the process's user and system CPU seconds per pass and the slowest
step's wall time, after the first pass (which traces the graph). ``fit`` runs with the
sequence's ``workers`` at 1 (Keras on TensorFlow then reads it through ``tf.data``'s
``from_generator``) and at 2 (Keras's own thread pool; ``recipe.make_sequences``' default). ``unet_course`` turns the BFC allocator on when it is
imported (``TF_CPU_ALLOCATOR_USE_BFC=true``); the "default allocator" rows set it to false.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r'''
import json, os, sys, time
mode, epochs, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
import keras
from unet_course import recipe, datasets
r = recipe.Recipe()
splits = datasets.load_splits("synthetic", r.slide_size, seed=r.seed,
                              counts={"train": r.train_images, "val": 8})
train_seq, _ = recipe.make_sequences(splits, r)
train_seq.workers = workers
model = recipe.build_model(r)
recipe.compile_model(model, r, jit_compile=False)
rows, steps = [], []
def record(seconds, before, after):
    rows.append({"s_per_step": seconds / len(train_seq), "user": after.user - before.user,
                 "sys": after.system - before.system, "slowest": max(steps)})
    steps.clear()
if mode == "fit":
    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.cpu = time.perf_counter(), os.times()
            self.last = self.start
        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            steps.append(now - self.last)
            self.last = now
        def on_epoch_end(self, epoch, logs=None):
            record(time.perf_counter() - self.start, self.cpu, os.times())
    model.fit(train_seq, epochs=epochs, verbose=0, callbacks=[Timer()])
else:
    batches = [train_seq[i] for i in range(len(train_seq))]
    for _ in range(epochs):
        start, cpu = time.perf_counter(), os.times()
        for x, y in batches:
            step = time.perf_counter()
            model.train_on_batch(x, y)
            steps.append(time.perf_counter() - step)
        record(time.perf_counter() - start, cpu, os.times())
print("RESULT " + json.dumps(rows[1:]))
'''


def run(mode: str, bfc: bool, epochs: int, workers: int = 1) -> list[dict]:
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true" if bfc else "false",
               TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(epochs), str(workers)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.split("RESULT ", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="passes per run (the first untimed)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first pass is not counted)")
    sys.path.insert(0, str(Path(__file__).parent))
    from quality import _machine, report

    lines = ["| training loop | CPU allocator | s/step (each timed pass) | user s / pass "
             "| system s / pass | slowest step, s (each pass) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for bfc, mode, workers in ((False, "fit", 1), (False, "train_on_batch", 1),
                               (True, "fit", 1), (True, "fit", 2),
                               (True, "train_on_batch", 1)):
        rows = run(mode, bfc, args.epochs, workers)
        steps = ", ".join(f"{r['s_per_step']:.2f}" for r in rows)
        slowest = ", ".join(f"{r['slowest']:.1f}" for r in rows)
        loop = f"`fit`, {workers} worker{'s' * (workers > 1)}" if mode == "fit" else f"`{mode}`"
        lines.append(
            f"| {loop} | {'BFC (pooling)' if bfc else 'default'} | {steps} | "
            f"{sum(r['user'] for r in rows) / len(rows):.0f} | "
            f"{sum(r['sys'] for r in rows) / len(rows):.0f} | "
            f"{slowest} |")
        print(lines[-1], flush=True)
    text = "\n".join([f"- machine: {_machine()}",
                      f"- command: `python benchmarks/fit_speed.py {' '.join(sys.argv[1:])}`".rstrip(),
                      "", *lines, ""])
    report(text, args.out)


if __name__ == "__main__":
    main()
