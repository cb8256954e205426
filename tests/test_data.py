"""Tests of the synthetic nuclei generator (unet_course.data.make_nuclei)."""

import numpy as np
import pytest
from scipy import ndimage
from skimage import measure

from unet_course.data import Difficulty, make_nuclei


@pytest.fixture(scope="module")
def sample():
    return make_nuclei(24, size=128, seed=3)


def test_shapes_and_dtypes(sample):
    images, labels = sample
    assert images.shape == (24, 128, 128, 3) and images.dtype == np.uint8
    assert labels.shape == (24, 128, 128) and labels.dtype == np.int32


def test_deterministic_for_a_seed_and_prefix_stable():
    a_images, a_labels = make_nuclei(4, size=64, seed=7)
    b_images, b_labels = make_nuclei(4, size=64, seed=7)
    assert np.array_equal(a_images, b_images) and np.array_equal(a_labels, b_labels)
    c_images, c_labels = make_nuclei(2, size=64, seed=7)  # image i depends on (seed, i) only
    assert np.array_equal(c_images, a_images[:2]) and np.array_equal(c_labels, a_labels[:2])
    d_images, _ = make_nuclei(4, size=64, seed=8)
    assert not np.array_equal(d_images, a_images)


def test_labels_are_consecutive_and_each_nucleus_is_one_piece(sample):
    _, labels = sample
    for lab in labels:
        assert lab.max() >= 1
        assert np.array_equal(np.unique(lab), np.arange(lab.max() + 1))
        pieces = measure.label(lab, connectivity=1, background=0)
        assert pieces.max() == lab.max(), "every label is one 4-connected region"


def test_touching_nuclei_are_present(sample):
    _, labels = sample
    lost = sum(int(lab.max()) - ndimage.label(lab > 0)[1] for lab in labels)
    total = sum(int(lab.max()) for lab in labels)
    assert 0.1 * total < lost < 0.8 * total


def test_images_agree_with_labels(sample):
    images, labels = sample
    gray = images.mean(axis=-1)
    styles = set()
    for img, lab in zip(gray, labels, strict=True):
        background, nuclei = img[lab == 0].mean(), img[lab > 0].mean()
        bright_field = background > 128
        styles.add(bright_field)
        # Nuclei stand out from the background in the direction of the style.
        assert (nuclei < background - 20) if bright_field else (nuclei > background + 20)
        # And every single nucleus does against the background right around it (lighting is
        # uneven, so the whole image's background is not a fair reference): no label without a
        # drawn nucleus.
        for j, box in enumerate(ndimage.find_objects(lab), start=1):
            rows, cols = (slice(max(s.start - 6, 0), s.stop + 6) for s in box)
            near, near_img = lab[rows, cols], img[rows, cols]
            # The background ring around it, away from other nuclei (whose blurred light
            # spills a few pixels into the background).
            others = ndimage.binary_dilation((near > 0) & (near != j), iterations=4)
            ring = ndimage.binary_dilation(near == j, iterations=4) & (near == 0) & ~others
            if not ring.any():  # wholly surrounded by other nuclei
                continue
            # Medians: a speck of debris in the ring must not decide. 6 grey levels is twice
            # the noise or more, as faint as the dim nuclei of real slides.
            contrast = np.median(near_img[ring]) - np.median(near_img[near == j])
            assert (contrast if bright_field else -contrast) > 6, (j, contrast)
    assert styles == {True, False}, "both fluorescence and bright-field images are made"


def test_single_style_and_size_variety():
    images, labels = make_nuclei(6, size=96, seed=1, style="brightfield")
    assert all(img[lab == 0].mean() > 128 for img, lab in zip(images, labels, strict=True))
    areas = np.concatenate([np.bincount(lab.ravel())[1:] for lab in labels])
    assert areas.max() > 3 * areas.min()
    props = [p for lab in labels for p in measure.regionprops(lab)]
    assert max(p.eccentricity for p in props) > 0.7 > min(p.eccentricity for p in props)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": 0}, ValueError, "n must be at least 1"),
        ({"n": 2.5}, TypeError, "n must be an integer"),
        ({"n": True}, TypeError, "n must be an integer"),
        ({"n": 1, "size": 16}, ValueError, "size must be at least 32"),
        ({"n": 1, "size": "256"}, TypeError, "size must be an integer"),
        ({"n": 1, "seed": -1}, ValueError, "seed must be non-negative"),
        ({"n": 1, "style": "phase"}, ValueError, "style must be one of"),
        ({"n": 1, "nuclei": (5, 2)}, ValueError, "nuclei must be a pair"),
        ({"n": 1, "radius": 3}, ValueError, "radius must be a pair"),
        ({"n": 1, "difficulty": {"debris": 1}}, TypeError, "data.Difficulty"),
    ],
)
def test_bad_arguments_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_nuclei(**kwargs)


def test_no_invalid_values_along_the_way():
    # A NaN cast to uint8 would leave garbage pixels: every step must stay finite.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images, _ = make_nuclei(300, size=48, seed=11)
    assert images.std() > 0


# --------------------------------------------------------------------------- the difficulty options


def _easy(**change):
    import dataclasses

    return dataclasses.replace(Difficulty.easy(), **change)


def test_each_difficulty_option_does_what_it_says():
    kw = dict(n=8, size=128, seed=4, style="fluorescence")
    _, flat_labels = make_nuclei(**kw, difficulty=_easy())
    flat, _ = make_nuclei(**kw, difficulty=_easy())
    # Uneven light: the lit background of bright-field images varies far more across the field.
    even, even_labels = make_nuclei(**{**kw, "style": "brightfield"}, difficulty=_easy())
    lit, lit_labels = make_nuclei(**{**kw, "style": "brightfield"},
                                  difficulty=_easy(illumination=1.0))

    def background_spread(images, labels):
        return np.mean([np.percentile(im.mean(-1)[lab == 0], 95) - np.percentile(
            im.mean(-1)[lab == 0], 5) for im, lab in zip(images, labels, strict=False)])

    assert background_spread(lit, lit_labels) > 2 * background_spread(even, even_labels)
    # Brightness spread: nuclei of one image differ more in mean brightness.
    spread, spread_labels = make_nuclei(**kw, difficulty=_easy(brightness_spread=1.5))

    def brightness_cv(images, labels):
        cvs = []
        for im, lab in zip(images, labels, strict=False):
            means = ndimage.mean(im.mean(-1), lab, np.arange(1, lab.max() + 1))
            cvs.append(np.std(means) / np.mean(means))
        return np.mean(cvs)

    assert brightness_cv(spread, spread_labels) > 1.5 * brightness_cv(flat, flat_labels)
    # Debris and out-of-focus nuclei: bright pixels outside every label.
    messy, messy_labels = make_nuclei(**kw, difficulty=_easy(debris=40.0, out_of_focus=0.5))

    def bright_background(images, labels):
        return np.mean([np.sum((im.mean(-1) > 60) & (ndimage.binary_dilation(lab > 0, iterations=3) == 0))
                        for im, lab in zip(images, labels, strict=False)])

    assert bright_background(messy, messy_labels) > 5 * bright_background(flat, flat_labels) + 20


def test_magnification_and_elongation_change_the_shapes():
    kw = dict(n=12, size=128, seed=6)
    _, small = make_nuclei(**kw, difficulty=_easy(magnification=(0.7, 0.7)))
    _, large = make_nuclei(**kw, difficulty=_easy(magnification=(1.5, 1.5)))
    area = lambda labels: np.median(np.concatenate([np.bincount(lab.ravel())[1:] for lab in labels]))  # noqa: E731
    assert area(large) > 3 * area(small)  # (1.5 / 0.7)^2 = 4.6 in expectation
    _, long = make_nuclei(**kw, difficulty=_easy(elongation=4.0))
    ratios = [p.axis_major_length / max(p.axis_minor_length, 1) for lab in long
              for p in measure.regionprops(lab) if p.area > 60]
    assert max(ratios) > 2.8


def test_the_default_slides_are_harder_for_otsu_than_easy_ones():
    from unet_course.baseline import baseline_scores

    hard = baseline_scores(*make_nuclei(12, size=128, seed=9))
    easy = baseline_scores(*make_nuclei(12, size=128, seed=9, difficulty=Difficulty.easy()))
    assert hard["otsu_watershed"]["iou"] < easy["otsu_watershed"]["iou"] - 0.1
    assert hard["otsu_watershed"]["dsb_map"] < easy["otsu_watershed"]["dsb_map"] - 0.1


@pytest.mark.parametrize("change", [{"illumination": -1}, {"mitotic": 2}, {"elongation": 0.5},
                                    {"magnification": (2, 1)}])
def test_bad_difficulty_is_refused(change):
    with pytest.raises(ValueError, match=next(iter(change))):
        Difficulty(**change)


# --------------------------------------------------------------------------- the drawing is exact
# _paint takes its candidate pixels from skimage.draw.ellipse; it must paint exactly what a painter
# that tries every pixel of each nucleus's bounding box paints, float32 depths bit for bit.


def _paint_one_by_one(size, centres, shapes, outlines):
    """The reference painter: every pixel of each nucleus's box, one after another."""
    import math

    labels, depth = np.zeros((size, size), np.int32), np.ones((size, size), np.float32)
    coords = np.arange(size, dtype=np.float32)
    for k, ((cy, cx), (a, b, theta), (w2, w3, p2, p3)) in enumerate(
            zip(centres, shapes, outlines, strict=True), start=1):
        cos, sin = math.cos(theta), math.sin(theta)
        grow = 1 + abs(w2) + abs(w3)
        reach_y, reach_x = (grow * math.hypot(a * sin, b * cos) + 1,
                            grow * math.hypot(a * cos, b * sin) + 1)
        y0, y1 = max(int(cy - reach_y), 0), min(int(cy + reach_y) + 2, size)
        x0, x1 = max(int(cx - reach_x), 0), min(int(cx + reach_x) + 2, size)
        if y0 >= y1 or x0 >= x1:
            continue
        dy, dx = (coords[y0:y1] - cy)[:, None], coords[x0:x1] - cx
        u, v = dx * (cos / a) + dy * (sin / a), dy * (cos / b) - dx * (sin / b)
        d = np.sqrt(u * u + v * v)
        if w2 or w3:
            inv = 1 / np.maximum(d, np.float32(1e-6))
            c1, s1 = u * inv, v * inv
            c2, s2 = c1 * c1 - s1 * s1, 2 * c1 * s1
            c3, s3 = c2 * c1 - s2 * s1, s2 * c1 + c2 * s1
            d /= 1 + (c2 * (w2 * math.cos(p2)) - s2 * (w2 * math.sin(p2))
                      + c3 * (w3 * math.cos(p3)) - s3 * (w3 * math.sin(p3)))
        won = d < depth[y0:y1, x0:x1]
        depth[y0:y1, x0:x1][won], labels[y0:y1, x0:x1][won] = d[won], k
    return labels, depth


def _random_nuclei(rng, size, count, wobble):
    centres = rng.uniform(-10, size + 10, (count, 2)).tolist()  # some cut by the border
    r = rng.uniform(0.5, max(size / 6, 1), count)
    aspect = np.sqrt(rng.uniform(1, 6, count))
    shapes = np.stack([r * aspect, r / aspect, rng.uniform(0, np.pi, count)], 1).tolist()
    outlines = np.concatenate([rng.uniform(-wobble, wobble, (count, 2)),
                               rng.uniform(0, 2 * np.pi, (count, 2))], 1).tolist()
    return centres, shapes, outlines


@pytest.mark.parametrize(("size", "count", "wobble"), [(40, 30, 0.2), (64, 60, 0.18),
                                                        (33, 5, 0.0), (96, 1, 0.1), (2, 3, 0.0)])
def test_painting_equals_trying_every_pixel_of_each_box(size, count, wobble):
    from unet_course.data import _paint

    for seed in range(5):
        nuclei = _random_nuclei(np.random.default_rng(seed), size, count, wobble)
        labels, depth = _paint(size, *nuclei)
        want_labels, want_depth = _paint_one_by_one(size, *nuclei)
        assert labels.dtype == np.int32 and depth.dtype == np.float32
        np.testing.assert_array_equal(labels, want_labels)
        np.testing.assert_array_equal(depth.view(np.int32), want_depth.view(np.int32))


def test_pieces_cut_off_and_slivers_are_dropped_and_the_rest_renumbered():
    from unet_course.data import _relabel

    labels = np.zeros((20, 20), np.int32)
    labels[1:11, 1:9] = 2  # cut in two below: a 16-pixel piece and a 32-pixel one
    labels[3:7, 1:9] = 5
    labels[13:19, 1:19] = 3  # kept whole
    labels[0, 12:20] = 4  # a sliver of 8 pixels
    got, bright = _relabel(labels, np.array([9.0, 1.5, 2.0, 3.0, 0.5]))
    want = np.zeros_like(labels)
    want[7:11, 1:9], want[3:7, 1:9], want[13:19, 1:19] = 1, 3, 2  # 2 -> 1, 3 -> 2, 5 -> 3
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(bright, np.choose(want, [0, 1.5, 2.0, 0.5]).astype(np.float32))


@pytest.mark.parametrize(("size", "cells"), [(32, 4), (63, 12), (256, 3), (256, 32), (40, 40)])
def test_smooth_fields_are_skimage_bilinear_resizes(size, cells):
    """The separable matrix form against ``skimage.transform.resize`` of the whole 2-D array."""
    from skimage.transform import resize

    from unet_course.rendering import _interpolation_matrix

    coarse = np.random.default_rng(size + cells).standard_normal((cells, cells), np.float32)
    matrix = _interpolation_matrix(size, cells)
    assert matrix.shape == (size, cells) and matrix.dtype == np.float32
    want = resize(coarse.astype(np.float64), (size, size), order=1, mode="edge",
                  anti_aliasing=False)
    np.testing.assert_allclose(matrix @ coarse @ matrix.T, want, atol=1e-5)
