"""Ctrl-C (SIGINT) in the command line: recorded when it arrives, honoured where the code checks.

Python's default handler raises ``KeyboardInterrupt`` wherever the main thread happens to be.
Raised inside a garbage-collection callback (TensorFlow runs some while it traces a model),
Python prints "Exception ignored ..." and carries on, so a command could swallow Ctrl-C and
exit 0. ``recording`` installs, for a whole command, a handler that only records the signal;
``check`` raises ``KeyboardInterrupt`` between stages and between images, where nothing
swallows it. A second Ctrl-C raises at once (for a stage that takes long); if that one is
swallowed too, the record stays and the next ``check`` raises.
``callbacks.HonourInterrupt`` (training) consults the same record (``pending``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_caught: list[int] = []


def _record(signum, frame) -> None:
    """The SIGINT handler of ``recording``: note the signal; raise on the second one."""
    _caught.append(signum)
    if len(_caught) > 1:  # pressed twice: the user means it now
        raise KeyboardInterrupt


@contextlib.contextmanager
def recording() -> Iterator[None]:
    """Record SIGINT instead of raising it inside the block; restore the previous handler after.

    Nested blocks share the outer one's record. Outside the main thread, or where SIGINT is
    ignored (a background job started with ``nohup``), the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is _record or previous in (signal.SIG_IGN, None):
        yield
        return
    _caught.clear()
    signal.signal(signal.SIGINT, _record)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _caught.clear()


def active() -> bool:
    """True inside ``recording`` (in the main thread): Ctrl-C is being recorded."""
    return signal.getsignal(signal.SIGINT) is _record


def pending() -> bool:
    """True when Ctrl-C was recorded and not yet honoured."""
    return bool(_caught)


def check() -> None:
    """Raise ``KeyboardInterrupt`` when Ctrl-C was recorded (``recording``)."""
    if _caught:
        raise KeyboardInterrupt
