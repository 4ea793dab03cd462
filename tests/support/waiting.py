"""Waiting on conditions with deadlines (never fixed sleeps), and process liveness."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from pathlib import Path


def poll_until(condition: Callable[[], object], timeout_s: float, poll_s: float = 0.02) -> bool:
    """Poll ``condition`` until truthy; False when ``timeout_s`` passed first."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


def wait_until(condition: Callable[[], object], timeout_s: float, what: str, poll_s: float = 0.02) -> None:
    """Poll ``condition`` until truthy; AssertionError naming ``what`` after ``timeout_s``."""
    if not poll_until(condition, timeout_s, poll_s):
        raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")


async def wait_for(
    condition: Callable[[], Awaitable[bool] | bool], timeout_s: float, what: str, poll_s: float = 0.02
) -> None:
    """Async: await (or call) ``condition`` until true; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        await asyncio.sleep(poll_s)


async def happens_within(condition: Callable[[], bool], timeout_s: float, poll_s: float = 0.02) -> bool:
    """Async: True as soon as ``condition`` holds, False when ``timeout_s`` passed without it.

    For what must not happen: the wait ends early when it does (and the test then fails on it)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(poll_s)
    return True


def alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()
    except OSError:
        return False
