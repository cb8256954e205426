"""How many shapes a model meets when it predicts images of many sizes, and what it costs.

    python benchmarks/prediction_shapes.py [--out benchmarks/results/prediction_shapes_cpu.md]
    KERAS_BACKEND=jax python benchmarks/prediction_shapes.py

``predict.predict_maps`` pads each side of an image to ``predict.bucket`` of it (the next
multiple of the pooling grid and of a quarter of the side's power of two). Without buckets it
padded to the next multiple of the grid only, so every new image size was a new input shape,
and XLA (always on JAX; on TensorFlow with ``--xla on``) compiles one program per shape. This
script predicts the recipe's untrained U-Net on 16 images whose sizes scatter around those
of the Data Science Bowl 2018 slides, twice, with the grid alone and with the buckets (after
one untimed image), and reports the distinct input shapes and the seconds of each pass.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np


def run() -> list[dict]:
    import keras

    from unet_course import predict, recipe

    rng = np.random.default_rng(0)
    common = [(256, 256), (256, 320), (360, 360), (520, 696), (512, 640), (260, 347)]
    sides = [(h + int(rng.integers(0, 40)), w + int(rng.integers(0, 40)))
             for h, w in (common * 3)[:16]]
    images = [rng.integers(0, 255, (h, w, 3)).astype(np.uint8) for h, w in sides]
    rows = []
    for name, bucket in (("pooling grid only", lambda side, step: -(-side // step) * step),
                         ("buckets", predict.bucket)):
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        model = recipe.build_model(recipe.Recipe())
        predict.predict_maps(model, [images[0][:64, :64]])  # the backend's own start-up
        shapes = set()
        real = model.predict_on_batch

        def counting(batch, real=real, shapes=shapes):
            shapes.add(batch.shape[1:3])
            return real(batch)

        model.predict_on_batch = counting
        saved, predict.bucket = predict.bucket, bucket
        try:
            times = []
            for _ in range(2):
                start = time.perf_counter()
                predict.predict_maps(model, images, batch_size=1)
                times.append(time.perf_counter() - start)
        finally:
            predict.bucket = saved
        rows.append({"padding": name, "shapes": len(shapes), "first": times[0],
                     "second": times[1]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the Markdown report here")
    args = parser.parse_args(argv)
    import keras

    rows = run()
    lines = ["# Prediction shapes: size buckets against the pooling grid alone", "",
             f"- machine: {platform.processor() or platform.machine()}, "
             f"{platform.system()}; backend {keras.backend.backend()}, Keras {keras.__version__}",
             "- command: `python benchmarks/prediction_shapes.py`", "",
             "| padding | input shapes | first pass (s) | second pass (s) |",
             "| --- | ---: | ---: | ---: |"]
    lines += [f"| {r['padding']} | {r['shapes']} | {r['first']:.1f} | {r['second']:.1f} |"
              for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        from unet_course.files import write_text

        write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
