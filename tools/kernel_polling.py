"""Running notebooks headless without missed kernel messages (``make test`` and ``make site``).

Seen on the course's machines with pyzmq 27 and nbclient 0.11: when a kernel sends many
messages at once (notebook 02's explorer cell), the wake-up for its reply can be missed, and
nbclient then picks the reply up only when its poll times out, that is after the whole cell
timeout (600 s), although the notebook passes. ``poll_in_slices`` makes every ``NotebookClient``
(nbmake's too) wait for a message at most ``step`` seconds at a time, which bounds that delay.
"""

from __future__ import annotations

import queue
import time


def sliced(get_msg, step: float = 1.0):
    """``get_msg`` that never waits more than ``step`` seconds at a time for a ZeroMQ event."""

    async def get_msg_in_slices(timeout: float | None = None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = step if deadline is None else max(0.0, min(step, deadline - time.monotonic()))
            try:
                return await get_msg(timeout=left)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    return get_msg_in_slices


def poll_in_slices(step: float = 1.0) -> None:
    """Make every ``nbclient.NotebookClient`` read its kernel's shell and iopub channels through
    ``sliced`` (once per process; calling it again changes nothing)."""
    from nbclient.client import NotebookClient

    start = NotebookClient.async_start_new_kernel_client
    if getattr(start, "polls_in_slices", False):
        return

    async def start_new_kernel_client(self):
        kc = await start(self)
        for channel in (kc.shell_channel, kc.iopub_channel):
            channel.get_msg = sliced(channel.get_msg, step)
        return kc

    start_new_kernel_client.polls_in_slices = True
    NotebookClient.async_start_new_kernel_client = start_new_kernel_client
