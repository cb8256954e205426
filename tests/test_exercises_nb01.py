"""Notebook 01's exercise checks: a stub is 'not yet', the right answer 'right', and plausible
mistakes 'wrong'."""

import numpy as np
import pytest
from scipy import ndimage
from skimage.filters import threshold_otsu

from unet_course.lessons.exercises import nb01


def _stub(*args):
    raise NotImplementedError


def mean_areas(labels):
    return np.array([np.bincount(lab.ravel())[1:].mean() for lab in labels])


def mean_areas_with_background(labels):  # counts label 0 as a nucleus
    return np.array([np.bincount(lab.ravel()).mean() for lab in labels])


def mean_areas_off_by_one(labels):  # drops nucleus 1 as well as the background
    return np.array([np.bincount(lab.ravel())[2:].mean() for lab in labels])


def count_8(mask):
    return ndimage.label(mask, structure=np.ones((3, 3)))[1]


def count_4(mask):  # SciPy's default structure: 4-connectivity
    return ndimage.label(mask)[1]


def to_one_hot(index_map, num_classes):
    return np.eye(num_classes, dtype=np.float32)[index_map]


def from_one_hot(one_hot):
    return one_hot.argmax(axis=-1)


def to_one_hot_channels_first(index_map, num_classes):
    return np.moveaxis(to_one_hot(index_map, num_classes), -1, 0)


def from_one_hot_wrong_axis(one_hot):
    return one_hot.argmax(axis=0)


def _grey(image):
    return image.astype(float).mean(axis=-1)  # not rgb2gray's weights: still accepted


def nuclei_mask(image):  # nuclei are the smaller side of Otsu's level, in either style
    grey = _grey(image)
    above = grey > threshold_otsu(grey)
    return above if above.mean() < 0.5 else ~above


def nuclei_mask_not_flipped(image):
    grey = _grey(image)
    return grey > threshold_otsu(grey)


def nuclei_mask_mean_128(image):  # a fixed level: fails on under- or over-exposed slides
    grey = _grey(image)
    grey = -grey if image.mean() > 128 else grey
    return grey > threshold_otsu(grey)


def nuclei_mask_median_128(image):
    grey = _grey(image)
    grey = -grey if np.median(grey) > 128 else grey
    return grey > threshold_otsu(grey)


def nuclei_mask_fixed_threshold(image):  # half the range instead of Otsu's level
    grey = _grey(image)
    grey = -grey if np.median(grey) > (grey.min() + grey.max()) / 2 else grey
    return grey > (grey.min() + grey.max()) / 2


CHECKS = {
    1: (nb01.check_exercise_1, (_stub,), (mean_areas,)),
    2: (nb01.check_exercise_2, (_stub, ...), (count_8, False)),
    3: (nb01.check_exercise_3, (_stub, _stub), (to_one_hot, from_one_hot)),
    4: (nb01.check_exercise_4, (_stub,), (nuclei_mask,)),
}


@pytest.mark.parametrize("number", sorted(CHECKS))
def test_a_stub_is_not_yet(number):
    check, stub, _ = CHECKS[number]
    assert check(*stub).status == "not yet"


def test_a_stub_with_an_answer_is_still_not_yet():
    assert nb01.check_exercise_2(_stub, False).status == "not yet"
    assert nb01.check_exercise_2(count_8, ...).status == "not yet"


@pytest.mark.parametrize("number", sorted(CHECKS))
def test_the_right_answer_is_right(number):
    check, _, right = CHECKS[number]
    result = check(*right)
    assert result.right, result


@pytest.mark.parametrize("check, answer, hint", [
    (nb01.check_exercise_1, (mean_areas_with_background,), "background"),
    (nb01.check_exercise_1, (mean_areas_off_by_one,), "regionprops"),
    (nb01.check_exercise_2, (count_4, False), "corner"),
    (nb01.check_exercise_2, (count_8, True), "answer"),
    (nb01.check_exercise_2, (count_8, "fewer"), "True or False"),
    (nb01.check_exercise_3, (to_one_hot_channels_first, from_one_hot), "channels last"),
    (nb01.check_exercise_3, (to_one_hot, from_one_hot_wrong_axis), "axis"),
    (nb01.check_exercise_4, (nuclei_mask_not_flipped,), "dark"),
    (nb01.check_exercise_4, (nuclei_mask_mean_128,), "fixed level"),
    (nb01.check_exercise_4, (nuclei_mask_median_128,), "fixed level"),
    (nb01.check_exercise_4, (nuclei_mask_fixed_threshold,), "Otsu"),
])  # fmt: skip
def test_a_plausible_mistake_is_wrong(check, answer, hint):
    result = check(*answer)
    assert result.status == "wrong" and hint in result.message, result


def test_a_mask_of_the_wrong_kind_is_wrong_not_a_crash():
    result = nb01.check_exercise_4(lambda image: image[..., 0])
    assert result.status == "wrong" and "bool" in result.message
