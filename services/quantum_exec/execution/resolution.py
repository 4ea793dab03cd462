"""Orders whose outcome is unknown: looked up by client id until found or certainly absent.

design.md §3: a request that timed out, got a 5xx, ``-1006`` or ``-1007`` may have been executed;
it is never blindly re-sent. The exchange rejects a request it processes after
``timestamp + recvWindow``, so once that has passed (plus a margin for clock offset) an order
that is still not found never will be, and only then may it be sent again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from quantum_exec.core.backoff import Backoff
from quantum_exec.core.errors import ExchangeError, RetryableError, UnknownOutcomeError
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.fencing import OwnershipLost
from quantum_exec.exchange.wire import Order
from quantum_exec.execution.ports import Gateway
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")
# Attempts at sending one order when the exchange certainly did not take it (retryable, or an
# unknown outcome resolved as absent).
SEND_ATTEMPTS = 3
RETRY_SEND = Backoff(base_s=0.2, cap_s=1.0)
# A clock offset the exchange may have beyond recvWindow before "not found" is certain.
CLOCK_MARGIN_S = 1.0


class OrderResolver:
    """Sends orders and resolves unknown outcomes (see the module docstring)."""

    def __init__(self, settings: Settings, gateway: Gateway) -> None:
        self._settings = settings
        self._gateway = gateway
        interval_s = settings.order_lookup_interval_s
        self._lookups = Backoff(base_s=interval_s / 4, cap_s=interval_s * 4)

    async def submit(self, symbol: str, client_id: str, send: Callable[[], Awaitable[Order]]) -> Order:
        """Place an order; after an unknown outcome look it up, re-send only when certainly absent.

        The gateway fences the request right before it leaves: :class:`OwnershipLost` ends the
        attempt without anything sent.
        """
        waits = RETRY_SEND.delays()
        for _ in range(SEND_ATTEMPTS):
            asked_at = time.monotonic()
            try:
                return await send()
            except UnknownOutcomeError as exc:
                if isinstance(exc, OwnershipLost):
                    raise
                log.warning(
                    "order.outcome_unknown", client_order_id=client_id, symbol=symbol, detail=exc.message
                )
                # From when the request really left (after pacing), never from before the wait.
                sent_at = exc.sent_at if exc.sent_at is not None else asked_at
                found = await self.resolve(sent_at, lambda: self._gateway.get_order(symbol, client_id))
                if found is not None:
                    return found
                log.warning("order.certainly_absent", client_order_id=client_id, symbol=symbol)
            except RetryableError as exc:
                log.warning("order.retry", client_order_id=client_id, symbol=symbol, detail=exc.message)
                await asyncio.sleep(next(waits))
        raise UnknownOutcomeError(
            f"order {client_id} could not be placed or found after {SEND_ATTEMPTS} attempts"
        )

    async def cancel(self, name: str, send: Callable[[], Awaitable[T]]) -> T:
        """Cancel a working order (``send`` answers what became of it). A cancel may be asked again
        safely (one already done answers "no longer open"), so an unknown outcome or a retryable
        error is asked again, ``SEND_ATTEMPTS`` times in all: a lost answer must not leave the
        order working with nobody following it until the intent is claimed again."""
        waits = RETRY_SEND.delays()
        for attempt in range(1, SEND_ATTEMPTS + 1):
            try:
                return await send()
            except OwnershipLost:
                raise
            except (UnknownOutcomeError, RetryableError) as exc:
                if attempt == SEND_ATTEMPTS:
                    raise
                log.warning("order.cancel_retry", order=name, detail=exc.message)
                await asyncio.sleep(next(waits))
        raise AssertionError("unreachable")

    async def resolve(self, sent_at: float, lookup: Callable[[], Awaitable[T | None]]) -> T | None:
        """Poll ``lookup`` until it finds the order or the request can no longer be accepted.

        ``sent_at`` is the monotonic time the request left (or, on resume, when this attempt
        began: a request of the dead attempt left before it).
        """
        s = self._settings
        certain_after = sent_at + s.recv_window_ms / 1000 + CLOCK_MARGIN_S
        waits = self._lookups.delays()
        failures = 0
        while True:
            try:
                found = await lookup()
            except ExchangeError as exc:
                failures += 1
                if failures > s.order_lookup_attempts and time.monotonic() > certain_after:
                    raise UnknownOutcomeError(f"order lookup keeps failing: {exc.message}") from None
            else:
                if found is not None:
                    return found
                if time.monotonic() > certain_after:
                    return None
            await asyncio.sleep(min(next(waits), max(0.0, certain_after - time.monotonic()) + 0.01))

    async def until_final(self, symbol: str, order: Order) -> Order:
        """A MARKET order reported NEW (e.g. found by lookup while matching) is polled until final."""
        s = self._settings
        for _ in range(s.order_lookup_attempts * 4):
            if order.is_final:
                return order
            await asyncio.sleep(s.order_lookup_interval_s / 4)
            found = await self._gateway.get_order(symbol, order.client_order_id)
            if found is not None:
                order = found
        return order


async def run_together(*steps: Awaitable[None]) -> None:
    """Run sibling steps in a TaskGroup: one failure cancels the others, nothing outlives the call.

    The first failure is raised as itself (not as an ExceptionGroup), so callers keep catching
    the typed errors they expect.
    """
    try:
        async with asyncio.TaskGroup() as group:
            for step in steps:
                group.create_task(step)  # type: ignore[arg-type]
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None
