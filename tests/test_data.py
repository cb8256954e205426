"""Tests of the synthetic nuclei generator (unet_course.data.make_nuclei)."""

import numpy as np
import pytest
from scipy import ndimage
from skimage import measure

from unet_course.data import make_nuclei


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
            ring = ndimage.binary_dilation(near == j, iterations=4) & (near == 0)
            if not ring.any():  # wholly surrounded by other nuclei
                continue
            contrast = near_img[ring].mean() - near_img[near == j].mean()
            assert (contrast if bright_field else -contrast) > 10, (j, contrast)
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
        ({"n": 1, "cluster_fraction": 1.5}, ValueError, "cluster_fraction"),
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


def test_dsb2018_functions_are_reachable_from_data():
    from unet_course import data, dsb2018
    from unet_course.data import download_dsb2018, load_dsb2018

    assert load_dsb2018 is dsb2018.load_dsb2018 and download_dsb2018 is dsb2018.download_dsb2018
    with pytest.raises(AttributeError, match="no attribute 'load_everything'"):
        data.load_everything  # noqa: B018
