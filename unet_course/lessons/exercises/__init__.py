"""Open exercises: the learner fills a stub, a check says *right*, *wrong* or *not yet*.

What belongs here: the one mechanism every notebook's exercises use (``Result``, ``run_check``)
and, in one small module per notebook (``nb01`` ... ``nb07``), the checks themselves. A check
compares the learner's answer with an independent computation (SciPy, scikit-image, a Keras
layer or a hand-worked example), never with the reference solution's own code, so that the
solutions in each notebook's ``## Solutions`` section are checked too. ``tests/test_exercises.py``
shows that every check rejects at least one plausible wrong answer.

A stub is a function whose body is ``raise NotImplementedError`` (or that returns ``None`` or
``...``): its check answers *not yet*, never *wrong*.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

STATUSES = ("right", "wrong", "not yet")


@dataclasses.dataclass(frozen=True)
class Result:
    """The verdict of a check: ``status`` is ``"right"``, ``"wrong"`` or ``"not yet"``."""

    exercise: str
    status: str
    message: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def __str__(self) -> str:
        mark = {"right": "✅ right", "wrong": "❌ not right yet", "not yet": "⏳ not attempted yet"}
        return f"{self.exercise}: {mark[self.status]}. {self.message}"

    def _repr_markdown_(self) -> str:  # how Jupyter shows it
        return str(self)

    @property
    def right(self) -> bool:
        return self.status == "right"


def run_check(exercise: str, attempt: Callable[[], Any], verify: Callable[[Any], str | None],
              success: str = "Well done.") -> Result:
    """Run the learner's ``attempt()`` and judge its value with ``verify``.

    Args:
        exercise: a name for the verdict, e.g. ``"Exercise 1"``.
        attempt: calls the learner's code and returns its answer. ``NotImplementedError``
            (the stub's body), ``None`` or ``...`` mean *not yet*; any other exception is
            *wrong*, with the exception named.
        verify: returns ``None`` when the answer is right, else one sentence that says what
            is wrong (what was expected, what was given), without giving the answer away.
        success: the message shown when the answer is right.

    Returns:
        a ``Result``.
    """
    try:
        value = attempt()
    except NotImplementedError:
        return Result(exercise, "not yet", "Fill in the stub above, run it, then run this cell.")
    except Exception as err:  # the learner's code failed: say how, do not crash the notebook
        return Result(exercise, "wrong", f"Your code raised {type(err).__name__}: {err}")
    if value is None or value is Ellipsis:
        return Result(exercise, "not yet", "Your function returns nothing yet.")
    try:
        problem = verify(value)
    except Exception as err:  # an answer of the wrong kind (shape, type) that verify cannot read
        return Result(exercise, "wrong", f"Your answer could not be checked: {type(err).__name__}: {err}")
    if problem:
        return Result(exercise, "wrong", problem)
    return Result(exercise, "right", success)
