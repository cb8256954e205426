"""Notebook 04's exercise checks: a stub is 'not yet', the right answer 'right', and plausible
mistakes 'wrong'."""

from unet_course.lessons.exercises import nb04


def _stub(*args, **kwargs):
    raise NotImplementedError


def _conv(k, c_in, c_out, bias=True):
    return k * k * c_in * c_out + (c_out if bias else 0)


def params(base, bias=True, upconv=True):
    total, c = 0, 3
    for k in range(5):
        f = base * 2**k
        total, c = total + _conv(3, c, f, bias) + _conv(3, f, f, bias), f
    for k in reversed(range(4)):
        f = base * 2**k
        up = _conv(2, c, f, bias) if upconv else 0
        total, c = total + up + _conv(3, 2 * f, f, bias) + _conv(3, f, f, bias), f
    return total + _conv(1, c, 1, bias)


def paper_output(size, depth=3):
    for _ in range(depth):
        size -= 4
        if size % 2:
            return None
        size //= 2
    size -= 4
    for _ in range(depth):
        size = 2 * size - 4
    return size if size > 0 else None


def tiles(target, depth=3, output=paper_output):
    below = max(s for s in range(1, target + 1) if output(s, depth))
    above = min(s for s in range(target, 4000) if output(s, depth))
    return below, above, output(below, depth), output(above, depth)


def strict_tiles(target, depth=3):  # nearest strictly below and strictly above
    below = max(s for s in range(1, target) if paper_output(s, depth))
    above = min(s for s in range(target + 1, 4000) if paper_output(s, depth))
    return below, above, paper_output(below, depth), paper_output(above, depth)


def paper_output_no_bottleneck(size, depth=3):  # forgets the bottleneck block's -4
    return paper_output(size + 4 * 2**depth, depth)


def depth4_rule(target, depth=3):  # copies the notebook's depth-4 sizes, 16 k + 60
    below = max(s for s in range(1, target + 1) if s >= 188 and (s - 60) % 16 == 0)
    above = min(s for s in range(target, 4000) if s >= 188 and (s - 60) % 16 == 0)
    return below, above, below - 184, above - 184


def rf(depth, pool=True):
    down = sum(2 * 2 * 2**k for k in range(depth + 1)) + (sum(2**k for k in range(depth)) if pool else 0)
    return 1 + down + sum(2 * 2 * 2**k for k in range(depth))


def test_stubs_are_not_yet():
    assert nb04.check_exercise_1(_stub, ...).status == "not yet"
    assert nb04.check_exercise_1(_stub, 4).status == "not yet"
    assert nb04.check_exercise_2(_stub).status == "not yet"
    assert nb04.check_exercise_3(_stub).status == "not yet"


def test_right_answers_are_right():
    assert nb04.check_exercise_1(params, 4).right
    assert nb04.check_exercise_2(tiles).right
    assert nb04.check_exercise_3(rf).right


def test_times_unset_says_set_times():
    result = nb04.check_exercise_1(params, ...)
    assert result.status == "not yet" and "times" in result.message
    assert nb04.check_exercise_1(lambda b: params(b, bias=False), ...).status == "wrong"


def test_plausible_mistakes_are_wrong():
    assert nb04.check_exercise_1(params, 2).status == "wrong"
    assert nb04.check_exercise_1(lambda b: params(b, bias=False), 4).status == "wrong"
    assert nb04.check_exercise_1(lambda b: params(b, upconv=False), 4).status == "wrong"
    assert nb04.check_exercise_2(lambda t, depth=3: tiles(t, depth, paper_output_no_bottleneck)).status == "wrong"
    assert nb04.check_exercise_2(lambda t, depth=3: tiles(t, depth)[:2] + tiles(t, depth)[2:][::-1]).status == "wrong"
    assert nb04.check_exercise_2(lambda t, depth=3: tiles(t, 3)).status == "wrong"  # ignores depth
    assert nb04.check_exercise_2(lambda t, depth=3: tiles(t, 4)).status == "wrong"
    assert nb04.check_exercise_2(depth4_rule).status == "wrong"
    strict = nb04.check_exercise_2(strict_tiles)
    assert strict.status == "wrong" and "itself fits" in strict.message
    assert nb04.check_exercise_3(lambda d: rf(d, pool=False)).status == "wrong"
    assert nb04.check_exercise_3(lambda d: 1 + 2 * 2 * 2**d).status == "wrong"
