"""Small asyncio helpers shared by the layers."""

from __future__ import annotations

import asyncio
from typing import Any

# How long one cancellation is given before the task is cancelled again.
CANCEL_WAIT_S = 1.0


async def cancel_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel and wait, cancelling again if a library call under way swallowed the first one
    (a cancellation landing as a Redis or HTTP call completes can be lost): never waits forever."""
    while task is not None and not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=CANCEL_WAIT_S)
