"""Waiters woken by key: one order's final event, one conditional order's update (never all at once)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class KeyedWaiters(Generic[K]):
    """Futures waiting for a key; :meth:`wake` wakes those of one key, :meth:`wake_all` every one."""

    def __init__(self) -> None:
        self._table: dict[K, list[asyncio.Future[None]]] = {}

    async def wait(self, key: K, timeout_s: float) -> None:
        """Wait until ``key`` is woken or ``timeout_s`` passed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._table.setdefault(key, []).append(future)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, timeout_s)
        finally:
            waiting = self._table.get(key)
            if waiting is not None:
                with contextlib.suppress(ValueError):
                    waiting.remove(future)
                if not waiting:
                    del self._table[key]

    def wake(self, key: K) -> None:
        for future in self._table.pop(key, []):
            if not future.done():
                future.set_result(None)

    def wake_all(self) -> None:
        for key in list(self._table):
            self.wake(key)
