"""Augmentation keeps image and mask aligned, never interpolates labels; the PyDataset."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from scipy import ndimage

from unet_course import augment, losses, sequence


def labelled_pattern(h=40, w=40, seed=0):
    """Instance labels (h, w) int32 and an RGB image that is a lookup of those labels.

    The image carries a horizontal gradient in its blue channel so that every flip and
    rotation changes it: a transform applied to the image but not the mask (or differently)
    breaks ``image[..., :2] == LUT[mask]``.
    """
    rng = np.random.default_rng(seed)
    labels = np.zeros((h, w), np.int32)
    for k in range(1, 7):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        labels[y:y + rng.integers(3, 8), x:x + rng.integers(3, 8)] = k
    lut = np.stack([np.arange(7) * 30 + 10, 250 - np.arange(7) * 20], axis=1).astype(np.uint8)
    image = np.zeros((h, w, 3), np.uint8)
    image[..., :2] = lut[labels]
    image[..., 2] = np.linspace(0, 255, w).astype(np.uint8)[None, :]
    return image, labels, lut


def dihedral_variants(a):
    return [np.rot90(b, k, axes=(0, 1)) for b in (a, a[::-1]) for k in range(4)]


@pytest.mark.parametrize("crop", [None, 24, (16, 32), 64])
def test_geometry_is_identical_for_image_and_mask(crop):
    image, labels, lut = labelled_pattern()
    for seed in range(12):
        out_image, out_labels = augment.augment_pair(image, labels, np.random.default_rng(seed),
                                                     crop=crop, brightness=0, contrast=0)
        assert out_labels.dtype == np.int32 and out_image.dtype == np.uint8
        np.testing.assert_array_equal(out_image[..., :2], lut[out_labels])
        if crop is not None:
            assert out_image.shape[:2] == augment._hw(crop)
        assert set(np.unique(out_labels)) <= set(np.unique(labels))


def test_flips_and_rotations_are_the_eight_dihedral_transforms():
    image, labels, _ = labelled_pattern(32, 32)
    seen = set()
    for seed in range(60):
        out_image, out_labels = augment.augment_pair(image, labels, seed, brightness=0,
                                                     contrast=0)
        matches = [i for i, v in enumerate(dihedral_variants(image)) if np.array_equal(v, out_image)]
        assert len(matches) == 1
        np.testing.assert_array_equal(out_labels, dihedral_variants(labels)[matches[0]])
        seen.add(matches[0])
    assert seen == set(range(8))


def test_crop_is_a_window_and_pad_mirrors():
    h, w = 30, 50
    coords = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1)
    starts = set()
    for seed in range(20):
        (out,) = augment.random_crop_or_pad([coords], (12, 20), np.random.default_rng(seed))
        y0, x0 = out[0, 0]
        np.testing.assert_array_equal(out, coords[y0:y0 + 12, x0:x0 + 20])
        starts.add((int(y0), int(x0)))
    assert len(starts) > 10
    (centre,) = augment.random_crop_or_pad([coords], (10, 10))
    np.testing.assert_array_equal(centre[0, 0], [10, 20])
    small = np.arange(12).reshape(3, 4)
    (padded,) = augment.random_crop_or_pad([small], (5, 4))  # centre: one row each side
    np.testing.assert_array_equal(padded, np.pad(small, [(1, 1), (0, 0)], mode="symmetric"))


def test_elastic_keeps_labels_exact_and_aligned():
    image, labels, lut = labelled_pattern(64, 64)
    rng = np.random.default_rng(1)
    img0, lab0 = augment._elastic(image, labels, None, rng, 6.0, 3, order=0)
    np.testing.assert_array_equal(img0[..., :2], lut[lab0])  # same warp, nearest everywhere
    assert lab0.dtype == np.int32 and set(np.unique(lab0)) <= set(np.unique(labels))
    assert not np.array_equal(lab0, labels)  # it did move something
    img1, lab1 = augment._elastic(image, labels, None, np.random.default_rng(1), 6.0, 3)
    np.testing.assert_array_equal(lab1, lab0)  # same seed, same field
    agree = np.mean(np.abs(img1[..., 0].astype(int) - lut[lab1][..., 0]) < 15)
    assert agree > 0.95  # bilinear image differs from the nearest mask only along edges


def test_elastic_nearest_matches_scipy_order0():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 50, (33, 47)).astype(np.int32)
    image = labels.astype(np.float32)
    _, warped = augment._elastic(image, labels, None, np.random.default_rng(3), 5.0, 3)
    field = augment.displacement_field((33, 47), np.random.default_rng(3), alpha=5.0)
    yy, xx = np.mgrid[:33, :47].astype(np.float32)
    ref = ndimage.map_coordinates(labels, [yy + field[0], xx + field[1]], order=0,
                                  mode="reflect")
    assert np.mean(warped == ref) > 0.999  # ties at exactly .5 may round the other way


def test_displacement_field_follows_the_paper():
    alpha, h, w = 10.0, 65, 33
    field = augment.displacement_field((h, w), np.random.default_rng(4), alpha=alpha, grid=3)
    coarse = np.random.default_rng(4).normal(0, alpha, (2, 3, 3))
    assert field.shape == (2, h, w) and field.dtype == np.float32
    # the cubic interpolation passes through the 3 x 3 control points at corners and centre
    for (gy, gx), (y, x) in {(0, 0): (0, 0), (2, 2): (h - 1, w - 1), (1, 1): (32, 16),
                             (0, 2): (0, w - 1)}.items():
        np.testing.assert_allclose(field[:, y, x], coarse[:, gy, gx], atol=1e-4)
    # smooth: neighbouring pixels move together
    assert np.abs(np.diff(field, axis=1)).max() < alpha
    draws = np.stack([augment.displacement_field((9, 9), s, alpha)[:, 0, 0] for s in range(400)])
    assert 8.5 < draws.std() < 11.5


def test_elastic_moves_pixels_by_the_field():
    h, w = 48, 48
    yy = np.repeat(np.arange(h, dtype=np.float32)[:, None], w, axis=1)
    out, _ = augment._elastic(yy, np.zeros((h, w), np.uint8), None, np.random.default_rng(5),
                              2.0, 3)
    field = augment.displacement_field((h, w), np.random.default_rng(5), alpha=2.0)
    inner = (slice(10, -10), slice(10, -10))  # away from the mirrored border
    np.testing.assert_allclose(out[inner] - yy[inner], field[0][inner], atol=1e-3)


def test_alpha_zero_is_identity():
    image, labels, _ = labelled_pattern()
    out_image, out_labels = augment._elastic(image, labels, None, 0, 0.0, 3)
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out_labels, labels)


def test_brightness_contrast_touch_the_image_only():
    image, labels, _ = labelled_pattern()
    rng = np.random.default_rng(6)
    out = augment.adjust_brightness_contrast(image, rng, brightness=0.2, contrast=0.0)
    shift = out.astype(int) - image.astype(int)
    inside = (image > 60) & (image < 190)  # no clipping there
    assert len(np.unique(shift[inside])) == 1 and shift[inside][0] != 0
    x = np.linspace(0.2, 0.8, 50, dtype=np.float32).reshape(5, 10)
    c = augment.adjust_brightness_contrast(x, np.random.default_rng(7), 0.0, 0.5)
    ratio = (c - c.mean()) / (x - x.mean())
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-4)
    _, out_labels = augment.augment_pair(image, labels, 8, flip=False, rotate90=False,
                                         brightness=0.3, contrast=0.3)
    np.testing.assert_array_equal(out_labels, labels)


def test_uint16_brightness_contrast_uses_the_full_range_and_never_wraps():
    """A 16-bit slide (background 0, bright nuclei) against the same transform in float64,
    with 65535 as the full range, clipped to 0..65535: a bare cast would wrap the darkened
    background round to about 65,000."""
    image = np.zeros((40, 40, 3), np.uint16)
    yy, xx = np.mgrid[:40, :40]
    image[(yy - 12) ** 2 + (xx - 14) ** 2 < 60] = 40_000  # two bright nuclei
    image[(yy - 28) ** 2 + (xx - 26) ** 2 < 40] = 64_000  # one near saturation
    signs = set()
    for seed in range(12):
        out = augment.adjust_brightness_contrast(image, np.random.default_rng(seed),
                                                 brightness=0.2, contrast=0.3)
        c, b = augment._draw_intensity(np.random.default_rng(seed), 0.2, 0.3)
        x = image.astype(np.float64)
        mean = x.mean(axis=(0, 1))
        want = np.clip(np.rint((x - mean) * c + mean + b * 65535), 0, 65535)
        assert out.dtype == np.uint16 and out.shape == image.shape
        np.testing.assert_allclose(out, want, atol=1, rtol=0, err_msg=f"seed {seed}")
        background = out[image == 0]
        assert background.min() == background.max() < 20_000  # one level, at the low end
        signs.add(bool(b < 0))
    assert signs == {True, False}  # darkened and brightened both checked
    # uint8 keeps its range of 255 and float images their range of 1
    eight = augment.adjust_brightness_contrast(np.zeros((4, 4), np.uint8), 3, 0.2, 0.0)
    _, b = augment._draw_intensity(np.random.default_rng(3), 0.2, 0.0)
    assert eight[0, 0] == np.clip(np.rint(b * 255), 0, 255)
    real = augment.adjust_brightness_contrast(np.zeros((4, 4), np.float32), 3, 0.2, 0.0)
    assert real.dtype == np.float32 and real[0, 0] == pytest.approx(b, abs=1e-7)


def test_three_class_gamma_serves_float_and_uint8_images():
    """``ThreeClassSequence(gamma>0)`` raises each image to a drawn power: float images (the
    default ``image_dtype="float32"``) as ``x ** power``, uint8 ones as uint8, through
    ``skimage.exposure.adjust_gamma``'s rounded lookup table."""
    from skimage.exposure import adjust_gamma

    pairs = [labelled_pattern(32, 32, seed) for seed in (1, 2)]
    eight = np.stack([image for image, _, _ in pairs])
    labels = np.stack([lab for _, lab, _ in pairs])
    real = eight.astype(np.float32) / 255  # float32 in [0, 1]
    for images, image_dtype in ((real, "float32"), (eight, "float32"), (eight, "uint8")):
        # default augmentation: flips, brightness and contrast (floats may go below 0) first
        x, y = sequence.ThreeClassSequence(images, labels, 2, size=32, gamma=0.3,
                                           image_dtype=image_dtype)[0]
        assert x.shape == (2, 32, 32, 3) and x.dtype == np.dtype(image_dtype)
        assert np.isfinite(x).all() and x.min() >= 0
        assert y.shape == (2, 32, 32, 3) and (y.sum(axis=-1) == 1).all()
    # the gamma alone; the power each image drew is read off the float twin (same draws)
    plain = {"flip": False, "rotate90": False, "brightness": 0.0, "contrast": 0.0}
    twins = [sequence.ThreeClassSequence(images, labels, 2, size=32, gamma=0.3, shuffle=False,
                                         augment_options=plain, image_dtype=image_dtype)[0][0]
             for images, image_dtype in ((real, "float32"), (eight, "uint8"))]
    powers = []
    for i in range(2):
        inside = (real[i] > 0.05) & (real[i] < 0.95)
        power = float(np.median(np.log(twins[0][i][inside]) / np.log(real[i][inside])))
        assert np.exp(-0.3) <= power <= np.exp(0.3) and abs(power - 1) > 0.01
        np.testing.assert_allclose(twins[0][i], real[i] ** power, rtol=1e-5, atol=1e-6)
        assert twins[1][i].dtype == np.uint8
        np.testing.assert_array_equal(twins[1][i], adjust_gamma(eight[i], power))
        powers.append(power)
    assert abs(powers[0] - powers[1]) > 0.01  # a power per image


def test_weights_follow_the_mask():
    image, labels, lut = labelled_pattern()
    weights = 1.0 + 0.5 * labels.astype(np.float32)
    for seed in range(8):
        img, lab, wts = augment.augment_pair(image, labels, seed, crop=28, elastic=True,
                                             elastic_alpha=3.0, weights=weights)
        np.testing.assert_array_equal(wts, 1.0 + 0.5 * lab)
        assert img.shape[:2] == lab.shape == wts.shape == (28, 28)


def test_bad_inputs_are_refused():
    image, labels, _ = labelled_pattern()
    with pytest.raises(ValueError, match="mask"):
        augment.augment_pair(image, labels[:-1], 0)
    with pytest.raises(TypeError, match="rng"):
        augment.augment_pair(image, labels, "seed")
    with pytest.raises(ValueError, match="crop"):
        augment.augment_pair(image, labels, 0, crop=(0, 5))
    with pytest.raises(ValueError, match="grid"):
        augment.displacement_field((8, 8), 0, grid=1)


# ---------------------------------------------------------------- SegmentationSequence

def mixed_dataset(n=5):
    sizes = [(40, 40), (48, 36), (30, 50), (64, 64), (20, 20)]
    images, labels = [], []
    for i in range(n):
        im, lab, _ = labelled_pattern(*sizes[i % len(sizes)], seed=i)
        images.append(im)
        labels.append(lab)
    return images, labels


def test_sequence_batches_from_mixed_sizes():
    images, labels = mixed_dataset()
    seq = sequence.SegmentationSequence(images, labels, batch_size=2, size=32, seed=3)
    assert len(seq) == 3
    x, y = seq[0]
    assert x.shape == (2, 32, 32, 3) and x.dtype == np.float32
    assert y.shape == (2, 32, 32, 1) and y.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert set(np.unique(y)) <= {0.0, 1.0}
    assert seq[2][0].shape[0] == 1  # the last batch holds the remainder
    seen = np.concatenate([seq[i][0][:, 0, 0, 0] for i in range(3)])
    assert len(seen) == 5


def test_sequence_is_deterministic_per_epoch_and_changes_between_epochs():
    images, labels = mixed_dataset()
    a = sequence.SegmentationSequence(images, labels, batch_size=2, size=24, seed=9)
    b = sequence.SegmentationSequence(images, labels, batch_size=2, size=24, seed=9)
    for i in (2, 0, 1):  # any order, as worker threads would ask
        np.testing.assert_array_equal(a[i][0], b[i][0])
        np.testing.assert_array_equal(a[i][1], b[i][1])
    first = a[0][0].copy()
    a.on_epoch_end()
    assert a.epoch == 1 and not np.array_equal(a[0][0], first)
    assert not np.array_equal(a.order(), b.order()) or not np.array_equal(a[0][0], b[0][0])


def test_sequence_without_augmentation_is_a_centre_crop():
    images, labels = mixed_dataset()
    seq = sequence.SegmentationSequence(images, labels, batch_size=5, size=20, augment=False,
                                       shuffle=False, image_dtype="uint8")
    x, y = seq[0]
    assert x.dtype == np.uint8
    for i in range(5):
        (want,), (lab,) = (augment.random_crop_or_pad([a[i]], 20) for a in (images, labels))
        np.testing.assert_array_equal(x[i], want)
        np.testing.assert_array_equal(y[i, ..., 0], (lab > 0).astype(np.float32))


def test_sequence_keeps_targets_and_serves_weights():
    images, labels = mixed_dataset()
    classes = [np.minimum(lab, 2) for lab in labels]  # a 3-class target 0/1/2
    weights = [1.0 + 0.25 * c for c in classes]
    seq = sequence.SegmentationSequence(images, classes, batch_size=3, size=16, binarize=False,
                                       weights=weights, augment_options={"elastic": True,
                                                                         "elastic_alpha": 2.0})
    x, y, w = seq[0]
    assert w.shape == (3, 16, 16) and w.dtype == np.float32
    assert set(np.unique(y)) <= {0.0, 1.0, 2.0}
    np.testing.assert_array_equal(w, 1.0 + 0.25 * y[..., 0])


def test_sequence_trains_a_model_with_workers_and_weight_maps():
    keras.utils.set_random_seed(0)
    images, labels = mixed_dataset()
    weights = [np.where(lab > 0, 2.0, 1.0) for lab in labels]
    seq = sequence.SegmentationSequence(images, labels, batch_size=2, size=16, weights=weights,
                                       workers=2)
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same",
                                                    activation="sigmoid")(inputs))
    model.compile("adam", loss=losses.WeightedBCELoss())
    hist = model.fit(seq, epochs=2, verbose=0)
    assert np.all(np.isfinite(hist.history["loss"]))
    assert seq.epoch >= 2  # Keras called on_epoch_end after each epoch (and may once more)


def test_sequence_refuses_bad_input():
    images, labels = mixed_dataset()
    with pytest.raises(ValueError, match="masks"):
        sequence.SegmentationSequence(images, labels[:3])
    with pytest.raises(ValueError, match="size"):
        sequence.SegmentationSequence(images, labels)
    with pytest.raises(ValueError, match="mask"):
        sequence.SegmentationSequence(images[:1], [labels[1]], size=8)
    with pytest.raises(ValueError, match="augment_options"):
        sequence.SegmentationSequence(images, labels, size=8, augment_options={"zoom": 2})
    with pytest.raises(ValueError, match="uint8"):
        sequence.SegmentationSequence([im / 255 for im in images], labels, size=8,
                                     image_dtype="uint8")
    with pytest.raises(IndexError):
        sequence.SegmentationSequence(images, labels, size=8, batch_size=5)[1]


def test_separable_field_matches_scipy_zoom():
    coarse = np.random.default_rng(11).normal(0, 10.0, (2, 3, 3))
    field = augment.displacement_field((40, 27), np.random.default_rng(11), alpha=10.0)
    for i in range(2):  # the separable form equals SciPy's 2-D cubic zoom
        ref = ndimage.zoom(coarse[i], (40 / 3, 27 / 3), order=3, grid_mode=False,
                           mode="nearest")
        np.testing.assert_allclose(field[i], ref, atol=1e-4)


# ---------------------------------------------------------------- the batch pipeline

@pytest.mark.parametrize("image_dtype", ["uint8", "float32"])
@pytest.mark.parametrize("options", [{}, {"rotate90": False}, {"brightness": 0, "contrast": 0},
                                     {"flip": False, "brightness": 0.3}])
def test_fast_batches_equal_augment_pair_image_by_image(image_dtype, options):
    """The vectorised batches draw the same numbers as augment_pair and give the same pixels,
    for images that fit the crop (fast path) and images that need padding (general path)."""
    rng = np.random.default_rng(0)
    sizes = [(40, 40), (48, 36), (30, 50), (64, 64), (20, 20), (33, 70)]
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    labels = [rng.integers(0, 5, (h, w)).astype(np.int32) for h, w in sizes]
    weights = [rng.random((h, w)) for h, w in sizes]
    for binarize in (True, False):
        seq = sequence.SegmentationSequence(images, labels, batch_size=4, size=(24, 30), seed=5,
                                           image_dtype=image_dtype, augment_options=options,
                                           binarize=binarize, weights=weights)
        assert sum(p is not None for p in seq._planes) == 6  # the fast path is in use
        for _ in range(2):
            for index in range(len(seq)):
                x, y, w = seq[index]
                ids = seq.order()[index * 4:(index + 1) * 4]
                draws = np.random.default_rng([5, seq.epoch, index])
                for b, i in enumerate(ids):
                    im, lab, wts = augment.augment_pair(images[i], labels[i], draws,
                                                        crop=(24, 30), weights=weights[i],
                                                        **options)
                    if image_dtype == "float32":
                        im = im.astype(np.float32) * np.float32(1 / 255)
                    np.testing.assert_array_equal(x[b], im)
                    np.testing.assert_array_equal(y[b, ..., 0], (lab > 0) if binarize else lab)
                    np.testing.assert_array_equal(w[b], wts.astype(np.float32))
            seq.on_epoch_end()


def _reflect(index, n):
    """Half-sample symmetric reflection of integer indices into 0..n-1 (SciPy's "reflect")."""
    index = np.mod(index, 2 * n)
    return np.where(index >= n, 2 * n - 1 - index, index)


def test_warp_matches_a_direct_bilinear_and_nearest_computation():
    """``_warp`` (ndimage.map_coordinates) against bilinear weights and rounded indices
    computed here by hand, with mirrored borders: coordinates reach 20 pixels outside."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)
    coords = np.stack(np.meshgrid(np.arange(37.0), np.arange(45.0), indexing="ij"))
    coords = (coords + rng.normal(0, 6, coords.shape)).astype(np.float32)
    y0, x0 = np.floor(coords).astype(int)
    fy, fx = (coords - np.floor(coords))[..., None]
    at = [[image[_reflect(y0 + i, 37), _reflect(x0 + j, 45)].astype(np.float64) for j in (0, 1)]
          for i in (0, 1)]
    want = (at[0][0] * (1 - fx) + at[0][1] * fx) * (1 - fy) + (at[1][0] * (1 - fx)
                                                               + at[1][1] * fx) * fy
    np.testing.assert_allclose(augment._warp(image.astype(np.float32), coords, 1), want,
                               atol=1e-3)
    got = augment._warp(image, coords, 1)
    assert got.dtype == np.uint8 and np.abs(got - np.rint(want)).max() <= 1
    # order 0: whole pixels by index, any dtype and channel count kept exactly
    mask = rng.random((37, 45, 2)) < 0.5
    near = mask[_reflect(np.rint(coords[0]).astype(int), 37),
                _reflect(np.rint(coords[1]).astype(int), 45)]
    moved = augment._warp(mask, coords, 0)
    assert moved.dtype == bool and moved.shape == (37, 45, 2)
    assert np.mean(moved == near) > 0.999  # ties at exactly .5 may round the other way


def id_dataset(n=40, side=8):
    """Images whose every pixel holds the image's index (geometry keeps it), empty masks."""
    images = [np.full((side, side, 1), i, np.uint8) for i in range(n)]
    return images, [np.zeros((side, side), np.int32) for _ in range(n)]


def test_on_epoch_end_starts_a_new_pass_only_after_a_whole_pass():
    images, labels = id_dataset(10)
    seq = sequence.SegmentationSequence(images, labels, batch_size=4, size=8, seed=1)
    first = seq.order().copy()
    seq.on_epoch_end()  # Keras calls it once before training
    assert seq.epoch == 0 and np.array_equal(seq.order(), first)
    seq[0], seq[1]
    seq.on_epoch_end()  # mid-pass (steps_per_epoch=2): same pass continues
    assert seq.epoch == 0
    seq[2]
    seq.on_epoch_end()
    assert seq.epoch == 1 and not np.array_equal(seq.order(), first)


def test_fit_with_steps_per_epoch_shows_each_image_once_per_pass():
    """Bug 1 of issue 12: 40 images, batch 2, steps_per_epoch=3 (Keras keeps one iterator
    across epochs and calls on_epoch_end before training and after every 3 steps)."""

    class Recording(sequence.SegmentationSequence):
        log: list

        def __getitem__(self, index):
            batch = super().__getitem__(index)
            self.log.append((self.epoch, index, tuple(np.rint(batch[0][:, 0, 0, 0] * 255))))
            return batch

    keras.utils.set_random_seed(0)
    images, labels = id_dataset(40)
    seq = Recording(images, labels, batch_size=2, size=8, seed=4,
                    augment_options={"brightness": 0, "contrast": 0})
    seq.log = []
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
    model.compile("sgd", loss="binary_crossentropy")
    model.fit(seq, epochs=8, steps_per_epoch=3, verbose=0)  # 24 steps: one pass and 4 more
    first_pass = {index: ids for epoch, index, ids in seq.log if epoch == 0}
    assert sorted(first_pass) == list(range(20))
    assert sorted(i for ids in first_pass.values() for i in ids) == list(range(40))
    assert seq.epoch == 1 and {e for e, _, _ in seq.log} == {0, 1}
