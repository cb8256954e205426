"""The timing harness of notebook 02: the sizes and counts it reports (never the timings)."""

import numpy as np
import pytest

from unet_course.lessons import conv_cost


def test_median_time_returns_the_median_and_the_last_result():
    calls = []
    seconds, result = conv_cost.median_time(lambda: calls.append(1) or len(calls), repeats=3)
    assert result == 3 and len(calls) == 3 and seconds >= 0
    with pytest.raises(ValueError, match="repeats"):
        conv_cost.median_time(lambda: None, 0)


def test_measure_reports_exact_sizes_and_skips_dense_over_the_limit():
    rows = conv_cost.measure_conv_costs([4, 8], dense_limit_bytes=4**4 * 4, repeats=1)
    small, big = rows
    assert small["dense_nbytes"] == 16 * 16 * 4 and np.isfinite(small["dense_s"])
    assert big["dense_nbytes"] is None and np.isnan(big["dense_s"])  # 64^2 * 4 B > limit
    for r in rows:  # 'same' 3x3: (3n - 2)^2 stored entries, counted by hand
        assert r["nnz"] == (3 * r["n"] - 2) ** 2
        assert r["sparse_bytes"] >= r["nnz"] * 8 and r["conv2d_s"] > 0


def test_measure_refuses_bad_arguments():
    with pytest.raises(ValueError, match="sizes"):
        conv_cost.measure_conv_costs([2], dense_limit_bytes=10)


def test_growth_exponent_of_a_power_law():
    pixels = np.array([16, 64, 256])
    assert conv_cost.growth_exponent(pixels, 3 * pixels**2.0) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        conv_cost.growth_exponent([16], [1.0])
