"""Notebook 07's exercise checks: a stub is 'not yet', the right answer 'right', and plausible
mistakes 'wrong'."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.segmentation import clear_border

from unet_course import dsb2018, rescale
from unet_course.lessons.exercises import nb07


def _stub(*args, **kwargs):
    raise NotImplementedError


def read_sample(sample_dir):
    sample_dir = Path(sample_dir)
    image = np.asarray(Image.open(sample_dir / "images" / f"{sample_dir.name}.png").convert("RGB"))
    labels = np.zeros(image.shape[:2], dtype=np.int32)
    for k, path in enumerate(sorted((sample_dir / "masks").glob("*.png")), start=1):
        labels[np.asarray(Image.open(path)) > 0] = k
    return image, labels


def read_sample_with_the_package(sample_dir):  # the course's loader, on the sample's parent
    images, labels = dsb2018.load_dsb2018(Path(sample_dir).parent, ids=[Path(sample_dir).name])
    return images[0], labels[0]


def read_sample_keeping_alpha(sample_dir):
    image, labels = read_sample(sample_dir)
    stored = np.asarray(Image.open(next((Path(sample_dir) / "images").glob("*.png"))))
    return (stored if stored.ndim == 3 else image), labels


def read_sample_as_one_mask(sample_dir):  # every mask painted 1: a semantic mask
    image, labels = read_sample(sample_dir)
    return image, (labels > 0).astype(np.int32)


def scale_factor(train_labels, labels, limits=(0.5, 2.0)):
    return float(np.clip(np.sqrt(rescale.median_area(train_labels) / rescale.median_area(labels)),
                         *limits))


def scale_without_sqrt(train_labels, labels, limits=(0.5, 2.0)):
    return float(np.clip(rescale.median_area(train_labels) / rescale.median_area(labels), *limits))


def scale_upside_down(train_labels, labels, limits=(0.5, 2.0)):
    return float(np.clip(np.sqrt(rescale.median_area(labels) / rescale.median_area(train_labels)),
                         *limits))


def scale_not_clipped(train_labels, labels, limits=(0.5, 2.0)):
    return float(np.sqrt(rescale.median_area(train_labels) / rescale.median_area(labels)))


def scale_from_image_medians(train_labels, labels, limits=(0.5, 2.0)):
    a_train = np.median([rescale.median_area(t) for t in train_labels])
    return float(np.clip(np.sqrt(a_train / rescale.median_area(labels)), *limits))


def drop_edge_nuclei(labels):
    return clear_border(labels)


def zero_the_edge_pixels(labels):  # cuts nuclei instead of dropping them
    out = labels.copy()
    out[0, :], out[-1, :], out[:, 0], out[:, -1] = 0, 0, 0, 0
    return out


def drop_top_and_left_only(labels):
    out = labels.copy()
    for v in np.unique(np.r_[labels[0, :], labels[:, 0]]):
        if v:
            out[labels == v] = 0
    return out


def drop_and_renumber(labels):
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(clear_border(labels) * 3)[0] * 5


CHECKS = {
    1: (nb07.check_exercise_1, read_sample),
    2: (nb07.check_exercise_2, scale_factor),
    3: (nb07.check_exercise_3, drop_edge_nuclei),
}


@pytest.mark.parametrize("number", sorted(CHECKS))
def test_a_stub_is_not_yet(number):
    check, _ = CHECKS[number]
    assert check(_stub).status == "not yet"


@pytest.mark.parametrize("number", sorted(CHECKS))
def test_the_right_answer_is_right(number):
    check, right = CHECKS[number]
    result = check(right)
    assert result.right, result


def test_the_course_loader_reads_the_checks_folders_right():
    # The check's folders are in the layout the course's own loader reads.
    result = nb07.check_exercise_1(read_sample_with_the_package)
    assert result.right, result


@pytest.mark.parametrize("check, answer, hint", [
    (nb07.check_exercise_1, read_sample_keeping_alpha, "alpha"),
    (nb07.check_exercise_1, read_sample_as_one_mask, "id of its own"),
    (nb07.check_exercise_2, scale_without_sqrt, "square root"),
    (nb07.check_exercise_2, scale_upside_down, "upside down"),
    (nb07.check_exercise_2, scale_not_clipped, "not clipped"),
    (nb07.check_exercise_2, scale_from_image_medians, "each training image"),
    (nb07.check_exercise_3, zero_the_edge_pixels, "drop whole nuclei"),
    (nb07.check_exercise_3, drop_top_and_left_only, "bottom or right"),
    (nb07.check_exercise_3, drop_and_renumber, "keep each nucleus's id"),
])  # fmt: skip
def test_a_plausible_mistake_is_wrong(check, answer, hint):
    result = check(answer)
    assert result.status == "wrong" and hint in result.message, result


def test_the_edge_rule_matches_scikit_image():
    # The check's loop is the rule scikit-image's clear_border applies to a label map.
    _, labels = nb07._sample(5, "RGB")
    assert np.array_equal(nb07._without_edge(labels), clear_border(labels))
