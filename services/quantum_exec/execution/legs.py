"""The one leg placer: every protective leg (an SL/TP conditional order of the Algo Order API) is
placed, replaced, cancelled and read here, under one error policy (style 15).

Its users: the protection after a fill and its failure policy (:mod:`.protection`), the legs sent
beside an entry (:mod:`.entries.beside`), the cancels of a CLOSE and of orphans
(:mod:`.entries.own_legs`), the stale legs of a netted position (:mod:`.opposite`), and on the
account side the live OCO and the reconcile (``account.live_oco``, ``account.resync``), which get
this placer as a constructor argument.

The policy, one row per answer (``tests/exec/test_legs.py`` drives each row against the simulator):

====================================  =============================================================
answer to a placement                 what the placer does
====================================  =============================================================
accepted                              the leg, with the status the exchange answered
retryable (certainly not processed)   sent again after a backoff, up to ``protection_retries`` times
unknown outcome (timeout, 5xx,        looked up by client id until found standing or certainly
``-1006``/``-1007``, unreadable)      absent (recvWindow passed); absent: sent again (a retry)
``-4116`` clientAlgoId exists         ours exists: looked up; it counts when it stands and covers
                                      what was asked (closePosition, or a quantity at least as
                                      large), else the placement failed
``-2021`` would immediately trigger   once: the trigger moved one tick inside the mark on its safe
                                      side and sent as a new request; a second ``-2021``, or a mark
                                      (or rules) that cannot be read, is a failure
``-4130`` closePosition leg exists    once, for a closePosition leg with a ``fallback_quantity``:
                                      sent again as a reduce-only leg of that quantity (Binance
                                      keeps one closePosition stop and one target per side; the
                                      standing one covers the whole position meanwhile)
any other refusal                     a failure, not retried
the lease is lost                     :class:`OwnershipLost` raised: nothing more is sent
====================================  =============================================================

A failure is returned (:attr:`Placement.error`), never raised: raising would cancel a sibling leg
half-placed and skip the caller's failure policy. Only a lost lease, and an unknown outcome whose
lookups keep failing, propagate. A cancel is fenced by the gateway like an order (a deposed owner
cancels nothing), answers False when the leg is no longer open (``-2011``/``-2013``) and raises any
other error, an unknown outcome included (the caller's next run reads the leg again: a resumed
intent looks its legs up, the OCO plans again from the view). A replacement is make before break:
the new leg is placed, seen armed (``NEW``), and only then is the old one cancelled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Protocol

from quantum_exec.core.backoff import Backoff
from quantum_exec.core.errors import ExchangeError, PermanentError, RetryableError, UnknownOutcomeError
from quantum_exec.core.ids import is_own_protective
from quantum_exec.core.rules import SymbolRules, ceil_to_step, floor_to_step
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.codes import CLOSE_POSITION_EXISTS, DUPLICATE_CLIENT_ID, IMMEDIATE_TRIGGER
from quantum_exec.exchange.fencing import OwnershipLost
from quantum_exec.exchange.wire import AlgoOrder, OrderSide, OrderType
from quantum_exec.execution.ports import Gateway
from quantum_exec.execution.resolution import OrderResolver
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

RETRY_LEG: Final = Backoff(base_s=0.1, cap_s=1.0)


@dataclass(frozen=True, slots=True)
class LegOrder:
    """One protective leg to place: reduce-only ``quantity``, or closePosition when it is None."""

    symbol: str
    side: OrderSide
    order_type: OrderType
    trigger_price: Decimal
    client_algo_id: str
    quantity: Decimal | None
    callback_rate: Decimal | None = None  # a trailing stop (its trigger_price is its activation)
    activate_price: Decimal | None = None
    # For a closePosition leg: the reduce-only quantity to send instead when Binance refuses it with
    # -4130 (a closePosition stop, or target, already stands on that side); None: no fallback.
    fallback_quantity: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Placement:
    """What became of a placement: the leg found or placed, or why not; the trigger last sent."""

    order: AlgoOrder | None
    error: ExchangeError | None
    trigger_price: Decimal

    @property
    def standing(self) -> bool:
        """Placed and not failed (armed, or fired: its order protected the position)."""
        return self.order is not None and self.order.status.is_placed

    @property
    def failure(self) -> str:
        """Why the leg does not stand (or is not armed)."""
        if self.error is not None:
            return str(self.error)
        return f"found {self.order.status}" if self.order is not None else "not placed"


@dataclass(frozen=True, slots=True)
class Replacement:
    """A make-before-break replacement: the new leg's placement, and whether the old leg was
    cancelled (True), was no longer open (False), or was left standing (None: the new one is not
    armed)."""

    placed: Placement
    old_cancelled: bool | None


class OpenLeg(Protocol):
    """A leg of ours as a caller knows it (``AlgoOrder``, the account view's ``AlgoView``)."""

    @property
    def algo_id(self) -> int: ...

    @property
    def client_algo_id(self) -> str: ...


class LegPlacer:
    """Places, replaces, cancels and reads our protective legs (see the module docstring)."""

    def __init__(self, settings: Settings, gateway: Gateway, resolver: OrderResolver | None = None) -> None:
        self._settings = settings
        self._gateway = gateway
        self._resolver = resolver if resolver is not None else OrderResolver(settings, gateway)

    async def place(self, leg: LegOrder) -> Placement:
        """Place ``leg`` under the policy; a definite failure is returned, not raised."""
        s = self._settings
        waits = RETRY_LEG.delays()
        trigger, rerounded, attempt = leg.trigger_price, False, 0
        error: ExchangeError | None = None
        while attempt <= s.protection_retries:
            asked_at = time.monotonic()
            try:
                placed = await self._gateway.place_algo(
                    leg.symbol,
                    leg.side,
                    leg.order_type,
                    trigger,
                    leg.client_algo_id,
                    quantity=leg.quantity,
                    working_type=s.working_type.value,
                    price_protect=s.price_protect,
                    **_trailing(leg),
                )
                return Placement(placed, None, trigger)
            except OwnershipLost:
                raise
            except UnknownOutcomeError as exc:
                error = exc
                sent_at = exc.sent_at if exc.sent_at is not None else asked_at
                found = await self._resolver.resolve(sent_at, functools.partial(self._standing, leg))
                if found is not None:
                    return Placement(found, None, trigger)
                log.warning("legs.certainly_absent", client_algo_id=leg.client_algo_id, symbol=leg.symbol)
            except PermanentError as exc:
                error = exc
                try:
                    if exc.code == DUPLICATE_CLIENT_ID:
                        found = await self._standing(leg)
                        if found is not None:
                            return Placement(found, None, trigger)
                        break
                    if exc.code == CLOSE_POSITION_EXISTS and leg.quantity is None and leg.fallback_quantity:
                        leg = dataclasses.replace(leg, quantity=leg.fallback_quantity, fallback_quantity=None)
                        log.warning(
                            "legs.close_position_taken", client_algo_id=leg.client_algo_id, symbol=leg.symbol
                        )
                        continue  # a new request, as a quantity
                    if exc.code != IMMEDIATE_TRIGGER or rerounded or leg.callback_rate is not None:
                        break  # a trailing stop's activation is not moved: it would change its meaning
                    rerounded = True
                    trigger = await self._rerounded(leg)
                except OwnershipLost:
                    raise
                except ExchangeError as read:
                    # Unreadable, the outcome stays a failure: the caller's failure policy decides.
                    why = f"{exc.message}; then a read failed: {read.message}"
                    error = PermanentError(why, code=exc.code)
                    break
                continue  # the re-rounded trigger is a new request, not a retry of the same one
            except RetryableError as exc:
                error = exc
            attempt += 1
            if attempt <= s.protection_retries:
                await asyncio.sleep(next(waits))
        return Placement(None, error, trigger)

    async def replace(self, old: OpenLeg, new: LegOrder) -> Replacement:
        """Make before break: place ``new``; only once it is seen armed (``NEW``, the answer or the
        lookup) is ``old`` cancelled. When the new leg is not armed (failed, or fired at once) the
        old one stays and the placement says why; a failed cancel raises with both open."""
        placed = await self.place(new)
        if placed.order is None or not placed.order.status.is_armed:
            return Replacement(placed, None)
        return Replacement(placed, await self.cancel(old.algo_id))

    async def cancel(self, algo_id: int) -> bool:
        """Cancel one of our legs; False when it was no longer open. Fenced by the gateway like an
        order: a caller that lost its lease raises :class:`OwnershipLost` and sends nothing."""
        return await self._gateway.cancel_algo(algo_id)

    async def find(self, client_algo_id: str) -> AlgoOrder | None:
        """The leg under ``client_algo_id`` in any status (the newest of that id), None if none."""
        return await self._gateway.get_algo(client_algo_id)

    async def find_since(self, sent_at: float, client_algo_id: str) -> AlgoOrder | None:
        """The leg a request that left at ``sent_at`` (monotonic) may have placed: looked up until
        found or certainly absent."""
        return await self._resolver.resolve(sent_at, lambda: self.find(client_algo_id))

    async def open_own(self, symbol: str | None = None) -> list[AlgoOrder]:
        """Our open protective legs (of ``symbol``, else all), listed by REST; nobody else's."""
        listed = await self._gateway.open_algo_orders(symbol)
        return [o for o in listed if is_own_protective(o.client_algo_id)]

    async def _standing(self, leg: LegOrder) -> AlgoOrder | None:
        """The leg under its id if it stands and covers what ``leg`` asks (closePosition, or a
        reduce-only quantity at least as large: it closes all of what is there); a failed one of
        an earlier try (an id is unique among open orders only) or a smaller one is none."""
        found = await self.find(leg.client_algo_id)
        if found is None or not found.status.is_placed:
            return None
        covers = found.close_position or (leg.quantity is not None and found.quantity >= leg.quantity)
        return found if covers else None

    async def _rerounded(self, leg: LegOrder) -> Decimal:
        """The trigger of ``leg`` moved one tick inside the current mark (after ``-2021``)."""
        rules = self._gateway.rules.get(leg.symbol)
        if rules is None:
            raise PermanentError(f"the rules of {leg.symbol} are not loaded")
        mark = await self._gateway.mark_price(leg.symbol)
        trigger = inside_mark(rules, leg.side, leg.order_type, mark)
        log.warning(
            "legs.trigger_rerounded",
            symbol=leg.symbol,
            client_algo_id=leg.client_algo_id,
            trigger=str(leg.trigger_price),
            mark=str(mark),
            new_trigger=str(trigger),
        )
        return trigger


def _trailing(leg: LegOrder) -> dict[str, Decimal]:
    """The trailing stop's parameters of ``leg`` (none for a stop or a target)."""
    if leg.callback_rate is None:
        return {}
    extra = {"callback_rate": leg.callback_rate}
    if leg.activate_price is not None:
        extra["activate_price"] = leg.activate_price
    return extra


def inside_mark(rules: SymbolRules, side: OrderSide, order_type: OrderType, mark: Decimal) -> Decimal:
    """One tick inside ``mark`` on the side where the leg's trigger is valid.

    A SELL stop and a BUY take-profit trigger when the price falls to them (valid below the
    mark); a BUY stop and a SELL take-profit when it rises to them (valid above).
    """
    below = (side is OrderSide.SELL) == (order_type is OrderType.STOP_MARKET)
    tick = rules.tick_size
    return floor_to_step(mark - tick, tick) if below else ceil_to_step(mark + tick, tick)
