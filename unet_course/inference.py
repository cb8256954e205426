"""Prediction of a model's class maps at each image's own size: what the course's pipelines call.

``predict_as_given`` runs the model on images as they are, each padded to the pooling grid;
``predict_classes`` (also ``recipe.predict_classes``) first gives the network images that look
like no training slide as ones that do: a fluorescence image saved in its dye's colour as grey,
and a grey image that may hold dark nuclei on a light field both ways, keeping the maps the
network is surer of (``normalization``; ``benchmarks/results/appearance_cpu.md``).
"""

from __future__ import annotations

import keras
import numpy as np

from unet_course import normalization


def predict_as_given(model: keras.Model, images: list[np.ndarray], batch_size: int = 8
                     ) -> list[np.ndarray]:
    """The model's maps of each image as given (no colour or polarity step), reflect-padded to
    the pooling grid and cropped back; same-size images are predicted together in batches."""
    from unet_course.geometry import unet_geometry

    depth, _ = unet_geometry(model)
    step = 2**depth
    out: list[np.ndarray | None] = [None] * len(images)
    by_shape: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        by_shape.setdefault(image.shape, []).append(i)
    for shape, ids in by_shape.items():
        h, w = shape[:2]
        pad = ((0, -h % step), (0, -w % step), (0, 0))
        for start in range(0, len(ids), batch_size):
            chunk = ids[start:start + batch_size]
            batch = np.stack([np.pad(images[i], pad, mode="reflect") for i in chunk])
            probs = np.asarray(model.predict_on_batch(batch.astype(np.float32)), np.float32)
            for i, p in zip(chunk, probs, strict=True):
                out[i] = p[:h, :w]
    return out


def predict_classes(model: keras.Model, images, batch_size: int = 8) -> list[np.ndarray]:
    """Class probabilities of images of any size at their native resolution.

    Each image is reflect-padded up to the next multiple of ``2**depth`` (the pooling grid),
    predicted and cropped back; same-size images are predicted together in batches.

    Two kinds of image that look like no training slide are given to the network as one that
    does (``benchmarks/results/appearance_cpu.md``):

    - a fluorescence image saved in its dye's colour goes in as its grey brightness
      (``normalization.one_colour_as_grey``);
    - a grey image whose polarity is in doubt (``normalization.polarity_in_doubt``: not
      clearly bright nuclei on a dark field; grey bright-field images have dark nuclei on a
      light one) is predicted as it is and negated, and the maps the network is more confident
      of are kept (``rescale.confidence``, as for the scale). The recipe's model kept all 15
      crowded fluorescence slides in doubt as they were and negated 63 of 64 grey bright-field
      ones; a model trained on dark nuclei should likewise keep them dark (not measured).

    Args:
        images: ``(n, H, W, 3)`` array or a list of ``(H_i, W_i, 3)`` arrays, any dtype.

    Returns:
        a list of ``(H_i, W_i, K)`` float32 arrays.
    """
    from unet_course.rescale import confidence

    images = [normalization.one_colour_as_grey(np.asarray(image)) for image in images]
    out = predict_as_given(model, images, batch_size)
    doubt = [i for i, image in enumerate(images) if normalization.polarity_in_doubt(image)]
    if doubt:
        negated = predict_as_given(model, [-images[i].astype(np.float32) for i in doubt],
                                   batch_size)
        for i, p in zip(doubt, negated, strict=True):
            as_is, flipped = confidence(out[i]), confidence(p)
            if flipped is not None and (as_is is None or flipped > as_is):
                out[i] = p
    return out
