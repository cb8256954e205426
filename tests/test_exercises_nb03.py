"""Notebook 03's exercise checks: a stub is 'not yet', the right answer 'right', and plausible
mistakes 'wrong'."""

import numpy as np
import pytest

from unet_course import conv
from unet_course.exercises import nb03


def _stub(*args):
    raise NotImplementedError


def dot_product_sides(x, kernel, y, stride, padding):
    lhs = np.sum(conv.conv2d(x, kernel, stride, padding) * y)
    rhs = np.sum(x * conv.conv2d_transpose(y, kernel, stride, padding))
    return lhs, rhs


def flipped_rhs(x, kernel, y, stride, padding):  # transposes with the flipped kernel
    lhs = np.sum(conv.conv2d(x, kernel, stride, padding) * y)
    return lhs, np.sum(x * conv.conv2d_transpose(y, kernel[::-1, ::-1], stride, padding))


@pytest.mark.parametrize("check", [nb03.check_exercise_1, nb03.check_exercise_2,
                                   nb03.check_exercise_3])
def test_a_stub_is_not_yet(check):
    assert check(_stub).status == "not yet"


@pytest.mark.parametrize("check, answer", [
    (nb03.check_exercise_1, lambda: ((32, 32, 128), (2, 2, 128, 256))),
    (nb03.check_exercise_2, dot_product_sides),
    (nb03.check_exercise_3, lambda k, s: k % s == 0),
])  # fmt: skip
def test_the_right_answer_is_right(check, answer):
    result = check(answer)
    assert result.right, result


@pytest.mark.parametrize("check, wrong", [
    (nb03.check_exercise_1, lambda: ((32, 32, 128), (2, 2, 256, 128))),  # Conv2D's layout
    (nb03.check_exercise_1, lambda: ((32, 32, 256), (2, 2, 128, 256))),  # channels kept
    (nb03.check_exercise_1, lambda: ((1, 32, 32, 128), (2, 2, 128, 256))),  # batch axis
    (nb03.check_exercise_2, flipped_rhs),
    (nb03.check_exercise_2, lambda x, k, y, s, p: (np.sum(x), np.sum(y))),
    (nb03.check_exercise_3, lambda k, s: k >= s),
    (nb03.check_exercise_3, lambda k, s: k == s),
])  # fmt: skip
def test_a_plausible_mistake_is_wrong(check, wrong):
    assert check(wrong).status == "wrong"
