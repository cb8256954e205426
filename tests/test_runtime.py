"""Tests of unet_course.runtime: quick mode parsing and the Setup cell's report."""

import pytest

import unet_course
from unet_course import runtime


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_quick_mode_on(monkeypatch, value):
    monkeypatch.setenv("UNET_COURSE_QUICK", value)
    assert unet_course.quick_mode() is True


@pytest.mark.parametrize("value", ["0", "false", "No", ""])
def test_quick_mode_off(monkeypatch, value):
    monkeypatch.setenv("UNET_COURSE_QUICK", value)
    assert unet_course.quick_mode() is False


def test_quick_mode_unset_is_full_mode(monkeypatch):
    monkeypatch.delenv("UNET_COURSE_QUICK", raising=False)
    assert unet_course.quick_mode() is False


def test_quick_mode_typo_is_an_error(monkeypatch):
    monkeypatch.setenv("UNET_COURSE_QUICK", "ture")
    with pytest.raises(ValueError, match="'ture' is not understood"):
        unet_course.quick_mode()


def test_runtime_summary_names_backend_and_mode(monkeypatch):
    import keras

    monkeypatch.setenv("UNET_COURSE_QUICK", "1")
    line = runtime.runtime_summary()
    assert f"backend {keras.backend.backend()}" in line and "quick mode" in line
    if not runtime.gpu_devices():
        assert "Change runtime type" in line  # tells a Colab learner what to do
        assert "GPU" not in runtime.runtime_summary(trains=False).split("·")[-1]  # trains nothing


def test_quiet_startup_keeps_cpp_start_up_lines_out():
    import os
    import subprocess
    import sys

    code = (
        "import sys, unet_course; unet_course.runtime.quiet_startup(); import keras; "
        "unet_course.runtime.runtime_summary(); print('ok', file=sys.stderr)"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0 and run.stderr.strip() == "ok", run.stderr


def test_importing_the_package_asks_tensorflow_to_pool_cpu_memory_unless_told_otherwise():
    import os
    import subprocess
    import sys

    code = "import os, unet_course; print(os.environ['TF_CPU_ALLOCATOR_USE_BFC'])"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPU_ALLOCATOR_USE_BFC"}
    run = lambda env: subprocess.run([sys.executable, "-c", code], env=env, text=True,  # noqa: E731
                                     capture_output=True, check=True).stdout.strip()
    assert run(env) == "true"
    assert run({**env, "TF_CPU_ALLOCATOR_USE_BFC": "false"}) == "false"  # the user's choice stays
