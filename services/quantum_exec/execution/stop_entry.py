"""A STOP / STOP_MARKET entry: a conditional order that opens the position when the market gets there.

It is placed through the Algo Order API (not reduce-only) under the entry's client id, and waits
(``expire_after_s``, at most ``QUANTUM_WORKING_ORDER_MAX_S``) until the exchange triggers it. The
triggered order carries an id of the exchange's (``actualOrderId``): a STOP_MARKET's fills at
once; a STOP's is a LIMIT that may rest, and is then worked like a LIMIT entry
(:mod:`.working`). An untriggered entry is cancelled at its deadline or when a CLOSE of the
symbol is waiting; one that triggered meanwhile is followed through.

The algo order is looked up every ``POLL_S`` (one weight-1 request): a stop entry waits for the
market, seconds to minutes, and the user data stream's ALGO_UPDATE is not wired to it yet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal

from quantum_exec.errors import UnknownOutcomeError
from quantum_exec.exchange.wire import AlgoOrder, AlgoStatus, Order, OrderSide
from quantum_exec.execution.ports import CloseRequests, Gateway
from quantum_exec.execution.resolution import OrderResolver
from quantum_exec.execution.run import Run
from quantum_exec.execution.working import working_limit_s
from quantum_exec.ops.logs import get_logger
from quantum_exec.settings import Settings

log = get_logger(__name__)

POLL_S = 0.25


class StopEntry:
    """Places and follows a stop entry until its order exists, or it ended untriggered."""

    def __init__(
        self,
        settings: Settings,
        gateway: Gateway,
        resolver: OrderResolver,
        closes: Callable[[], CloseRequests | None],
    ) -> None:
        self._settings = settings
        self._gateway = gateway
        self._resolver = resolver
        self._closes = closes

    async def place(self, run: Run, client_algo_id: str, quantity: Decimal, side: OrderSide) -> AlgoOrder:
        """Send the conditional entry; an unknown outcome is looked up by client id, never re-sent."""
        intent = run.intent
        assert run.stop_price is not None
        asked_at = time.monotonic()
        try:
            return await self._gateway.place_stop_entry(
                intent.symbol,
                side,
                run.stop_price,
                client_algo_id,
                quantity,
                price=run.limit_price,
                time_in_force=intent.time_in_force,
                working_type=self._settings.working_type.value,
            )
        except UnknownOutcomeError as exc:
            sent_at = exc.sent_at if exc.sent_at is not None else asked_at
            found = await self._resolver.resolve(sent_at, lambda: self._gateway.get_algo(client_algo_id))
            if found is None:
                raise
            return found

    async def triggered(self, run: Run, algo: AlgoOrder) -> tuple[Order | None, AlgoOrder]:
        """The order the entry triggered (None when it ended untriggered), and the algo order."""
        intent = run.intent
        limit_s = working_limit_s(self._settings, intent)
        deadline = run.began + limit_s
        with run.step("stop_entry"):
            while True:
                order = await self._order_of(intent.symbol, algo)
                if order is not None or algo.status.is_final:
                    return order, algo
                closes = self._closes()
                why = None
                if time.monotonic() >= deadline:
                    why = f"expire_after {limit_s:g} s"
                elif closes is not None and await closes.wait(intent.symbol, run.stream_id, 0):
                    why = "a CLOSE of the symbol is waiting"
                if why is not None:
                    cancelled = await self._gateway.cancel_algo(algo.algo_id)
                    log.info("stop_entry.cancelled", intent_id=run.key, why=why, cancelled=cancelled)
                    found = await self._gateway.get_algo(algo.client_algo_id)
                    if found is not None:
                        algo = found
                    # Triggered in the meantime: its order is followed like any other.
                    return await self._order_of(intent.symbol, algo), algo
                await asyncio.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
                found = await self._gateway.get_algo(algo.client_algo_id)
                if found is not None:
                    algo = found

    async def _order_of(self, symbol: str, algo: AlgoOrder) -> Order | None:
        if algo.status in (AlgoStatus.NEW, AlgoStatus.TRIGGERING) or algo.actual_order_id in ("", "0"):
            return None
        return await self._gateway.get_order_by_id(symbol, int(algo.actual_order_id))
