"""The consumer's shutdown drain: wait for the intents executing, within the grace period."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from quantum_exec.ops.logs import get_logger
from quantum_exec.stream.entries import Entry, named

log = get_logger(__name__)

# How often the drain looks again at what is still executing (a parked entry frees it at once).
_DRAIN_POLL_S: Final = 0.2


async def drain(
    pending: set[asyncio.Task[Any]], held: dict[str, Entry], grace_s: float, hurry_event: asyncio.Event
) -> set[asyncio.Task[Any]]:
    """Wait for the intents executing, within ``grace_s``, unless ``hurry_event`` is set (a second
    stop signal); a parked entry (a LIMIT or STOP resting on the exchange) cannot finish by waiting
    and is not waited for: its order stays and is resumed after the restart. The tasks still
    running."""
    executing = sorted(named(k, e) for k, e in held.items() if e.started and not e.parked)
    resting = sorted(named(k, e) for k, e in held.items() if e.parked)
    log.info(
        "consumer.draining",
        executing=executing,
        resting=resting,
        grace_s=grace_s,
        detail="waiting for the executing intents; a second SIGTERM/SIGINT stops at once; "
        "resting orders stay on the exchange and are resumed after a restart",
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    hurry = asyncio.create_task(hurry_event.wait())
    try:
        while pending and not hurry_event.is_set():
            if held and all(e.parked for e in held.values()):
                break  # only resting entries left: waiting would drain nothing
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            _done, pending = await asyncio.wait(
                pending | {hurry},
                timeout=min(remaining, _DRAIN_POLL_S),
                return_when=asyncio.FIRST_COMPLETED,
            )
            pending.discard(hurry)
    finally:
        hurry.cancel()
    return {t for t in pending if not t.done()}
