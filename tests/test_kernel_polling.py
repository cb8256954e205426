import asyncio
import queue

import pytest
from nbclient.client import NotebookClient

from tools import kernel_polling


class FakeChannel:
    """A channel whose message arrives only on the ``ready``-th poll, whatever the timeout."""

    def __init__(self, ready: int):
        self.ready, self.timeouts = ready, []

    async def get_msg(self, timeout=None):
        self.timeouts.append(timeout)
        if len(self.timeouts) < self.ready:
            await asyncio.sleep(timeout or 0)  # a poll that sees nothing waits its timeout out
            raise queue.Empty
        return {"msg_type": "execute_reply"}


def test_a_missed_wake_up_costs_one_slice_not_the_whole_timeout():
    channel = FakeChannel(ready=3)
    get = kernel_polling.sliced(channel.get_msg, step=0.01)
    assert asyncio.run(get(timeout=600)) == {"msg_type": "execute_reply"}
    assert len(channel.timeouts) == 3 and max(channel.timeouts) <= 0.01  # never 600 s at once


def test_the_cell_timeout_still_holds():
    channel = FakeChannel(ready=10**9)
    get = kernel_polling.sliced(channel.get_msg, step=0.01)
    with pytest.raises(queue.Empty):
        asyncio.run(get(timeout=0.05))
    assert 2 <= len(channel.timeouts) <= 7  # about 0.05 / 0.01 slices


def test_no_timeout_waits_in_slices_until_the_message_comes():
    channel = FakeChannel(ready=4)
    asyncio.run(kernel_polling.sliced(channel.get_msg, step=0.01)(timeout=None))
    assert channel.timeouts == [0.01] * 4


def test_every_notebook_client_is_patched_once():
    kernel_polling.poll_in_slices()  # conftest.py already did; a second call changes nothing
    patched = NotebookClient.async_start_new_kernel_client
    kernel_polling.poll_in_slices()
    assert NotebookClient.async_start_new_kernel_client is patched
    assert patched.polls_in_slices
