"""The benchmark scripts still run: each answers ``--help``, and ``quality.py --quick`` (a
smoke run: 8 steps on 64x64 slides) trains, scores and prints its table.

Their numbers are measured by running them (``benchmarks/README.md``), never here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=BENCHMARKS.parent)


@pytest.mark.parametrize("script", sorted(p.name for p in BENCHMARKS.glob("*.py")))
def test_every_benchmark_answers_help(script):
    done = _run(str(BENCHMARKS / script), "--help")
    assert done.returncode == 0 and "usage" in done.stdout, done.stderr[-1500:]


def test_quality_quick_runs_end_to_end():
    done = _run(str(BENCHMARKS / "quality.py"), "--quick", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for row in ("otsu_watershed", "unet_watershed_native", "unet_watershed"):
        assert f"| synthetic | {row} |" in done.stdout


@pytest.mark.parametrize("script", ["magnification.py", "appearance.py"])
def test_model_benchmarks_refuse_a_missing_model_before_any_work(script, tmp_path):
    done = _run(str(BENCHMARKS / script), "--model", str(tmp_path / "none.keras"))
    assert done.returncode == 2 and "is not a file" in done.stderr, done.stderr[-1500:]
    done = _run(str(BENCHMARKS / script), "--model", str(tmp_path / "none.keras"),
                "--test-images", "0")
    assert done.returncode == 2 and "--test-images must be at least 1" in done.stderr
