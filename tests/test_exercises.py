"""The exercise mechanism: a stub is 'not yet', a failing attempt is 'wrong', never a crash.

Each notebook's checks (``unet_course.lessons.exercises.nbNN``) have their own tests beside these, which
show that every check accepts the reference solution and rejects a plausible wrong answer.
"""

import pytest

from unet_course.lessons.exercises import Result, run_check


def _equals(expected):
    return lambda value: None if value == expected else f"expected {expected}, got {value}"


def _stub():
    raise NotImplementedError


@pytest.mark.parametrize("attempt", [_stub, lambda: None, lambda: ...])
def test_stub_is_not_yet(attempt):
    assert run_check("Exercise 1", attempt, _equals(3)).status == "not yet"


def test_right_and_wrong():
    assert run_check("E", lambda: 3, _equals(3)).right
    wrong = run_check("E", lambda: 4, _equals(3))
    assert wrong.status == "wrong" and "expected 3, got 4" in wrong.message


def test_an_exception_in_the_learners_code_is_wrong_and_named():
    result = run_check("E", lambda: 1 / 0, _equals(3))
    assert result.status == "wrong" and "ZeroDivisionError" in result.message


def test_an_answer_verify_cannot_read_is_wrong_not_a_crash():
    result = run_check("E", lambda: "text", lambda v: None if v.shape == (2,) else "bad")
    assert result.status == "wrong" and "AttributeError" in result.message


def test_result_refuses_unknown_status_and_prints_its_verdict():
    with pytest.raises(ValueError, match="status"):
        Result("E", "maybe", "")
    assert "not attempted yet" in str(Result("E", "not yet", "x"))
