"""Notebook 03's exercise checks: a stub is 'not yet', the right answer 'right', and plausible
mistakes 'wrong'."""

import numpy as np
import pytest

from unet_course.lessons import conv
from unet_course.lessons.exercises import nb03


def _stub(*args):
    raise NotImplementedError


def by_stamps(y, kernel, stride, flip=False, swap=False, step=None):
    """The scatter loop; the keyword arguments make it one of the plausible mistakes."""
    kernel = kernel[::-1, ::-1] if flip else kernel
    kernel = kernel.transpose(0, 1, 3, 2) if swap else kernel  # filters and channels swapped
    (h, w, filters), (kh, kw, cin, _) = y.shape, kernel.shape
    step = stride if step is None else step
    out = np.zeros(((h - 1) * stride + kh, (w - 1) * stride + kw, cin))
    for i in range(h):
        for j in range(w):
            for f in range(filters):
                out[i * step : i * step + kh, j * step : j * step + kw] += y[i, j, f] * kernel[..., f]
    return out


def gathers(y, kernel, stride):  # a forward convolution of the zero-padded y: the wrong direction
    kh, kw = kernel.shape[:2]
    padded = np.pad(y, ((kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
    return conv.conv2d(padded, kernel.transpose(0, 1, 3, 2), 1, "valid")[: (y.shape[0] - 1) * stride + kh,
                                                                      : (y.shape[1] - 1) * stride + kw]


@pytest.mark.parametrize("check", [nb03.check_exercise_1, nb03.check_exercise_2,
                                   nb03.check_exercise_3])
def test_a_stub_is_not_yet(check):
    assert check(_stub).status == "not yet"


@pytest.mark.parametrize("check, answer", [
    (nb03.check_exercise_1, lambda: ((32, 32, 128), (2, 2, 128, 256))),
    (nb03.check_exercise_2, by_stamps),
    (nb03.check_exercise_2, lambda y, k, s: conv.conv2d_transpose(y, k, s, "valid")),
    (nb03.check_exercise_3, lambda k, s: k % s == 0),
])  # fmt: skip
def test_the_right_answer_is_right(check, answer):
    result = check(answer)
    assert result.right, result


@pytest.mark.parametrize("check, wrong", [
    (nb03.check_exercise_1, lambda: ((32, 32, 128), (2, 2, 256, 128))),  # Conv2D's layout
    (nb03.check_exercise_1, lambda: ((32, 32, 256), (2, 2, 128, 256))),  # channels kept
    (nb03.check_exercise_1, lambda: ((1, 32, 32, 128), (2, 2, 128, 256))),  # batch axis
    (nb03.check_exercise_2, lambda y, k, s: by_stamps(y, k, s, flip=True)),
    (nb03.check_exercise_2, lambda y, k, s: by_stamps(y, k, s, swap=True)),  # Conv2DTranspose's layout
    (nb03.check_exercise_2, lambda y, k, s: by_stamps(y, k, s, step=1)),  # stride ignored
    (nb03.check_exercise_2, lambda y, k, s: by_stamps(y, k, s)[::-1, ::-1]),  # output flipped
    (nb03.check_exercise_2, gathers),  # gathers with the stride ignored
    (nb03.check_exercise_2, lambda y, k, s: np.zeros(((y.shape[0] - 1) * s + k.shape[0],
                                                      (y.shape[1] - 1) * s + k.shape[1], k.shape[2]))),
    (nb03.check_exercise_3, lambda k, s: k >= s),
    (nb03.check_exercise_3, lambda k, s: k == s),
])  # fmt: skip
def test_a_plausible_mistake_is_wrong(check, wrong):
    assert check(wrong).status == "wrong"
