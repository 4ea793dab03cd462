"""A task whose cancellation a library call swallowed is cancelled again, never awaited forever."""

from __future__ import annotations

import asyncio
import time

import pytest

from quantum_exec.account.userstream import UserStream
from quantum_exec.core.aio import cancel_task
from quantum_exec.ledger.book import LedgerBook

pytestmark = pytest.mark.timeout(20)


async def _swallows_first_cancel(state: dict[str, int]) -> None:
    """What a loop does when a cancellation lands as a Redis reply completes (Python 3.11's
    ``wait_for`` returns the reply and drops the cancel): it carries on to its next wait."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            state["cancels"] += 1
            if state["cancels"] == 1:
                continue  # lost
            raise


async def test_cancel_task_cancels_again_until_the_task_is_done() -> None:
    state = {"cancels": 0}
    task = asyncio.create_task(_swallows_first_cancel(state))
    await asyncio.sleep(0)
    started = time.monotonic()
    await cancel_task(task)
    assert task.cancelled() and state["cancels"] == 2
    assert time.monotonic() - started < 5
    await cancel_task(None)  # nothing to stop


@pytest.mark.parametrize("owner", [LedgerBook, UserStream])
async def test_the_ledger_and_the_user_stream_stop_even_when_a_cancel_is_lost(owner: type) -> None:
    state = {"cancels": 0}
    part = owner.__new__(owner)  # only the stop path: its task, its flags
    part._task = asyncio.create_task(_swallows_first_cancel(state))
    part._stopping = asyncio.Event()
    part._session = None
    await asyncio.sleep(0)
    started = time.monotonic()
    await asyncio.wait_for(part.stop(), 10)
    # One more cancel a second later, not the caller's timeout (the service gives a part 5 s).
    assert time.monotonic() - started < 3
    assert state["cancels"] == 2 and part._task is None
