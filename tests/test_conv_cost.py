"""Notebook 02's timer: it returns the median of its calls and the last result."""

import pytest

from unet_course.lessons import conv_cost


def test_median_time_returns_the_median_and_the_last_result(monkeypatch):
    ticks = iter([0.0, 1.0, 10.0, 13.0, 20.0, 22.0])  # calls of 1, 3 and 2 seconds
    monkeypatch.setattr(conv_cost.time, "perf_counter", lambda: next(ticks))
    calls = []
    seconds, result = conv_cost.median_time(lambda: calls.append(1) or len(calls), repeats=3)
    assert result == 3 and len(calls) == 3 and seconds == 2.0
    with pytest.raises(ValueError, match="repeats"):
        conv_cost.median_time(lambda: None, 0)
