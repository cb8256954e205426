"""Ctrl-C (SIGINT) in the command line: recorded when it arrives (``recording``), raised as
``KeyboardInterrupt`` between stages (``check``), where nothing swallows it."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_caught: list[int] = []


def _record(signum, frame) -> None:
    _caught.append(signum)
    if len(_caught) > 1:  # pressed twice: the user means it now
        raise KeyboardInterrupt


@contextlib.contextmanager
def recording() -> Iterator[None]:
    """Record SIGINT (and SIGTERM, where it has its default handler) instead of raising it
    inside the block, then restore the previous handlers. Nested blocks share the outer
    record; outside the main thread, or where SIGINT is ignored (``nohup``), the block runs
    unchanged."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is _record \
            or previous in (signal.SIG_IGN, None):
        yield
        return
    _caught.clear()
    terminate = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGINT, _record)
    if terminate is signal.SIG_DFL:  # `kill` or a job scheduler's stop: the same as Ctrl-C
        signal.signal(signal.SIGTERM, _record)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if terminate is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, terminate)
        _caught.clear()


def active() -> bool:
    """True inside ``recording`` (in the main thread)."""
    return signal.getsignal(signal.SIGINT) is _record


def pending() -> bool:
    """True when Ctrl-C was recorded and not yet honoured."""
    return bool(_caught)


def check() -> None:
    """Raise ``KeyboardInterrupt`` when Ctrl-C was recorded (``recording``)."""
    if _caught:
        raise KeyboardInterrupt
