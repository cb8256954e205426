"""Notebook 02's exercise checks: a stub is 'not yet', the right answer 'right', and plausible
mistakes 'wrong'."""

import math

import numpy as np
import pytest

from unet_course.lessons.exercises import nb02


def _stub(*args):
    raise NotImplementedError


def dilated_out_size(h, k, s, d, padding):
    if padding == "same":
        return math.ceil(h / s)
    return (h - d * (k - 1) - 1) // s + 1


def dilation_ignored(h, k, s, d, padding):  # the ordinary kernel's size
    return dilated_out_size(h, k, s, 1, padding)


def span_k_times_d(h, k, s, d, padding):  # the dilated kernel taken as k * d pixels wide
    return dilated_out_size(h, k, s, d, padding) if padding == "same" else (h - k * d) // s + 1


def no_plus_one(h, k, s, d, padding):  # forgets the first window
    return dilated_out_size(h, k, s, d, padding) - (padding == "valid")


def same_rounds_down(h, k, s, d, padding):  # 'same' as h // s
    return h // s if padding == "same" else dilated_out_size(h, k, s, d, padding)


def difference_matrix(n):
    t = np.zeros((n - 1, n))
    for i in range(n - 1):
        t[i, i : i + 2] = [1, -1]
    return t


def nnz_valid(h, w):
    return 9 * (h - 2) * (w - 2)


def patches(x, k):
    h, w = x.shape
    return np.array([x[i : i + k, j : j + k].ravel()
                     for i in range(h - k + 1) for j in range(w - k + 1)])  # fmt: skip


@pytest.mark.parametrize("check", [nb02.check_exercise_1, nb02.check_exercise_2,
                                   nb02.check_exercise_3, nb02.check_exercise_4])
def test_a_stub_is_not_yet(check):
    assert check(_stub).status == "not yet"


@pytest.mark.parametrize("check, answer", [
    (nb02.check_exercise_1, dilated_out_size), (nb02.check_exercise_2, difference_matrix),
    (nb02.check_exercise_3, nnz_valid), (nb02.check_exercise_4, patches),
])  # fmt: skip
def test_the_right_answer_is_right(check, answer):
    result = check(answer)
    assert result.right, result


@pytest.mark.parametrize("check, wrong", [
    (nb02.check_exercise_1, dilation_ignored),
    (nb02.check_exercise_1, span_k_times_d),
    (nb02.check_exercise_1, no_plus_one),
    (nb02.check_exercise_1, same_rounds_down),
    (nb02.check_exercise_2, lambda n: difference_matrix(n).T),  # inputs x outputs
    (nb02.check_exercise_2, lambda n: -difference_matrix(n)),  # flipped kernel [-1, 1]
    (nb02.check_exercise_3, lambda h, w: (3 * h - 2) * (3 * w - 2)),  # the 'same' count
    (nb02.check_exercise_3, lambda h, w: 9 * (h - 3) * (w - 3)),  # off by one
    (nb02.check_exercise_4, lambda x, k: patches(x, k).T),  # one column per window
    (nb02.check_exercise_4, lambda x, k: patches(x.T, k)),  # windows of the transposed image
    (nb02.check_exercise_4, lambda x, k: patches(x, k)[:, ::-1]),  # flipped kernel
])  # fmt: skip
def test_a_plausible_mistake_is_wrong(check, wrong):
    assert check(wrong).status == "wrong"


def test_exercise_3_does_not_print_the_answer():
    result = nb02.check_exercise_3(lambda h, w: (3 * h - 2) * (3 * w - 2))
    assert result.status == "wrong" and "nnz_valid(3, 3) gave 49" in result.message
    assert "9" not in result.message.replace("49", "")  # 9 entries for the 3x3 case: not said
