"""Protection after the entry: SL and TP through the Algo Order API, and the failure policy.

Both legs are placed concurrently, sized from what the entry opened (its executed quantity, less
any opposite position it netted against) or as closePosition. A leg that cannot be placed leaves
the position ``partial``/``unprotected`` (policy ``keep``) or closes it at market (policy
``close``, the default): a position is never left naked without saying so. Every leg is placed,
looked up and cancelled through the one leg placer (:mod:`.legs`) and its error policy; a failure
it returns (a second ``-2021``, a mark it could not read, a refusal) is what the policy acts on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from quantum_exec.contracts import CloseFill, ErrorSource, ProtectionState, ProtectiveOrder, ResultStatus
from quantum_exec.core.errors import (
    ExchangeError,
    IntentRejected,
    PermanentError,
    ReasonCode,
    RetryableError,
    UnknownOutcomeError,
)
from quantum_exec.core.ids import client_order_id, tp_level_id
from quantum_exec.core.rules import (
    SymbolRules,
    ceil_to_step,
    check_protection,
    floor_to_step,
    fmt,
    trigger_from_pct,
)
from quantum_exec.core.settings import ProtectionFailurePolicy, ProtectionMode, Settings
from quantum_exec.exchange.wire import AlgoOrder, AlgoStatus, Order, OrderSide, OrderType
from quantum_exec.execution.guards import Guards
from quantum_exec.execution.leg_copies import find_copy, retire_copies
from quantum_exec.execution.legs import LegOrder, LegPlacer
from quantum_exec.execution.ports import Gateway
from quantum_exec.execution.resolution import OrderResolver, run_together
from quantum_exec.execution.run import Run, result_error
from quantum_exec.execution.stops.ladder import ladder_too_small, level_triggers, plan_ladder
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)


@dataclass(slots=True)
class Leg:
    """One protective order: what was asked, and what became of it."""

    kind: Literal["SL", "TP", "TS"]
    order_type: OrderType
    side: OrderSide
    client_algo_id: str
    trigger_price: Decimal | None
    quantity: Decimal | None
    order: AlgoOrder | None = None
    error: ExchangeError | IntentRejected | None = None
    level: int | None = None  # a take-profit ladder's level; None: a leg that closes all of it
    callback_rate: Decimal | None = None  # a trailing stop (TS): its callback, percent
    activate_price: Decimal | None = None  # and where it activates (None: at once)
    # A closePosition leg's reduce-only size should Binance refuse it (-4130: one closePosition
    # stop and one target per side): what the entry has opened.
    fallback_quantity: Decimal | None = None
    replaces: AlgoOrder | None = None  # a smaller copy under the other id, to go (:mod:`.leg_copies`)

    @property
    def closes_all(self) -> bool:
        """A stop or a single target: once it fired, the position left through it."""
        return self.level is None

    @property
    def standing(self) -> bool:
        """Placed and not failed: armed, or fired (its order protected the position)."""
        return self.order is not None and self.order.status.is_placed

    @property
    def failure(self) -> str:
        """Why the leg does not stand."""
        if self.error is not None:
            return str(self.error)
        return f"found {self.order.status}" if self.order is not None else "not placed"

    def to_contract(self) -> ProtectiveOrder:
        state = self.order.status if self.order else ("FAILED" if self.error else "NOT_PLACED")
        return ProtectiveOrder(
            order_type=self.order_type,
            side=self.side,
            algo_id=self.order.algo_id if self.order else None,
            client_algo_id=self.client_algo_id,
            trigger_price=self.order.trigger_price if self.order else self.trigger_price,
            quantity=self.quantity,
            close_position=self.quantity is None,
            state=state,
            error=result_error(self.error) if self.error else None,
            level=self.level,
            callback_pct=self.callback_rate,
            activation_price=self.activate_price,
            activated=(self.activate_price is None) if self.callback_rate is not None else None,
        )


class Protector:
    """Places the legs, applies the failure policy, and records our open protective orders."""

    def __init__(
        self,
        settings: Settings,
        gateway: Gateway,
        resolver: OrderResolver,
        legs: LegPlacer,
        own_protective: dict[str, set[int]],
    ) -> None:
        self._settings = settings
        self._gateway = gateway
        self._resolver = resolver
        self._legs = legs
        # Algo ids of our own protective orders that may still be open, per symbol.
        self.own = own_protective

    async def protect(
        self,
        run: Run,
        rules: SymbolRules,
        entry: Order,
        size: Decimal,
        *,
        long: bool,
        resume: bool,
        close_position: bool = False,
    ) -> Order | None:
        """Place SL and TP concurrently; apply the failure policy. Returns an emergency close order.

        ``size`` is the position the entry opened on its side: its executed quantity, or less when
        it first netted against an opposite position (only the rest needs covering or closing).
        """
        symbol = run.intent.symbol
        legs = self.legs(run, rules, entry.avg_price, size, long=long, close_position=close_position)
        closing = False  # the earlier attempt (resumed) was in its emergency close
        sl = next((leg.trigger_price for leg in legs if leg.kind == "SL"), None)
        tps = [leg.trigger_price for leg in legs if leg.kind == "TP"] or [None]
        try:
            for tp in tps:
                check_protection(rules, long=long, reference=entry.avg_price, sl=sl, tp=tp)
        except IntentRejected as exc:
            # The fill moved past a trigger: such an order would fire at once.
            for leg in legs:
                leg.error = exc
        else:
            closing = resume and await self._resumed(run, legs)
            if not closing:
                await self.place(symbol, legs)
        return await self.settle(run, legs, size, long=long, resume=resume, closing=closing)

    async def _resumed(self, run: Run, legs: list[Leg]) -> bool:
        """Find what the earlier attempt placed; True when it was closing the position instead.

        A leg found standing is kept; one found failed (CANCELED, REJECTED, EXPIRED) or absent is
        placed again, unless its sibling fired (the position left through it). A failed or absent
        leg may also mean the earlier attempt was in its emergency close, which cancels the legs
        before it sends the close: that close, if it exists, is followed, never protected over.
        """
        found = run.earlier_sent_by
        await run_together(*(self._find(run.intent.symbol, leg, found) for leg in legs))
        if all(leg.standing for leg in legs) or _fired(legs):
            return False
        symbol, close_id = run.intent.symbol, client_order_id(run.key, "flatten")
        closing = await self._resolver.resolve(found, lambda: self._gateway.get_order(symbol, close_id))
        return closing is not None

    async def _find(self, symbol: str, leg: Leg, resumed_at: float) -> None:
        leg.order = await self._legs.find_since(resumed_at, leg.client_algo_id)
        if leg.order is not None and not leg.standing:
            log.warning(
                "protection.leg_found_failed",
                kind=leg.kind,
                client_algo_id=leg.client_algo_id,
                status=leg.order.status.value,
            )
        if not leg.standing:  # replaced meanwhile (a live OCO): one copy, never a second
            await find_copy(self._legs, symbol, leg, resumed_at)

    def legs(
        self, run: Run, rules: SymbolRules, price: Decimal, size: Decimal, *, long: bool, close_position: bool
    ) -> list[Leg]:
        """The SL/TP legs of the intent, triggers from ``price`` (percentages) or as given."""
        exit_side = OrderSide.SELL if long else OrderSide.BUY
        # closePosition when configured, or for an entry still working (it covers what fills later).
        quantity = (
            None
            if close_position or self._settings.protection_mode is ProtectionMode.CLOSE_POSITION
            else size
        )
        sl, tp = Guards.triggers(rules, run.intent, long=long, price=price)
        legs: list[Leg] = []
        fallback = size if quantity is None else None
        if sl is not None:
            sl_id = client_order_id(run.key, "sl")
            legs.append(
                Leg("SL", OrderType.STOP_MARKET, exit_side, sl_id, sl, quantity, fallback_quantity=fallback)
            )
        if run.intent.take_profits:
            # Each level closes its share: a quantity whatever the protection mode.
            too_small = ladder_too_small(rules, run.intent.take_profits, size)
            if too_small is not None:
                # What filled is too small for any level (checked before the entry for what was
                # asked; a partly filled entry may still come to this): a failed leg, never none.
                trigger = level_triggers(rules, run.intent.take_profits[:1], long=long, entry=price)[0]
                tp_id = tp_level_id(run.key, 1)
                legs.append(
                    Leg("TP", OrderType.TAKE_PROFIT_MARKET, exit_side, tp_id, trigger, size, error=too_small)
                )
            for rung in plan_ladder(rules, run.intent.take_profits, size, long=long, entry=price):
                legs.append(
                    Leg(
                        "TP",
                        OrderType.TAKE_PROFIT_MARKET,
                        exit_side,
                        tp_level_id(run.key, rung.level),
                        rung.trigger,
                        rung.quantity,
                        level=rung.level,
                    )
                )
        elif tp is not None:
            legs.append(
                Leg(
                    "TP",
                    OrderType.TAKE_PROFIT_MARKET,
                    exit_side,
                    client_order_id(run.key, "tp"),
                    tp,
                    quantity,
                    fallback_quantity=fallback,
                )
            )
        trailing = trailing_leg(rules, run, price, size, exit_side, long=long)
        if trailing is not None:
            legs.append(trailing)
        return legs

    async def place(self, symbol: str, legs: list[Leg]) -> None:
        """Place the legs not yet standing, concurrently (each with its retries); each records its
        order or error. Nothing is placed beside a leg that fired: the position left through it.
        A smaller copy a leg replaces (:mod:`.leg_copies`) is cancelled once the leg stands armed."""
        if not _fired(legs):
            await run_together(*(self._place_leg(symbol, leg) for leg in legs if not leg.standing))
        await retire_copies(self._legs, symbol, legs, self.own.setdefault(symbol, set()))

    async def withdraw(self, symbol: str, legs: list[Leg]) -> None:
        """Cancel legs placed beside an entry that opened nothing (best effort, logged)."""
        for leg in legs:
            if leg.order is None or not leg.order.status.is_armed:
                continue  # never placed, or past cancelling (a cancel would answer -2011)
            try:
                await self._legs.cancel(leg.order.algo_id)
            except (PermanentError, RetryableError) as exc:
                log.warning("protection.withdraw_failed", symbol=symbol, kind=leg.kind, detail=str(exc))
                continue
            self.own.get(symbol, set()).discard(leg.order.algo_id)
            leg.order = dataclasses.replace(leg.order, status=AlgoStatus.CANCELED)

    async def settle(
        self, run: Run, legs: list[Leg], size: Decimal, *, long: bool, resume: bool, closing: bool = False
    ) -> Order | None:
        """Record what the legs became and apply the failure policy; the emergency close, if any
        (``closing``: the resumed attempt found the earlier one's, which is followed whatever the policy)."""
        s, out, symbol = self._settings, run.out, run.intent.symbol
        exit_side = OrderSide.SELL if long else OrderSide.BUY
        for leg in legs:
            if leg.order is not None and leg.standing:
                self.own.setdefault(symbol, set()).add(leg.order.algo_id)
        # A leg that fired did its work: a sibling cancelled after it (the OCO) is no failure.
        failed = [] if _fired(legs) else [leg for leg in legs if not leg.standing]
        flatten: Order | None = None
        if not legs:
            # Nothing was asked to be placed: never "protected" with no leg on the exchange (P3).
            out.protection = ProtectionState.UNPROTECTED
            run.error(
                ReasonCode.PROTECTION_FAILED,
                ErrorSource.INTERNAL,
                f"no protective leg planned for {fmt(size)} {symbol}: the position stands unprotected",
            )
            log.error("position.unprotected", intent_id=run.key, symbol=symbol, reasons="no leg planned")
        elif not failed and not closing:
            out.protection = ProtectionState.PROTECTED
            metrics.TIME_TO_PROTECTED.observe(max(0.0, time.time() - run.created_s()))
        else:
            reasons = "; ".join(f"{leg.kind}: {leg.failure}" for leg in failed)
            if closing:
                reasons = f"the earlier attempt was closing the position ({reasons})"
            if closing or s.protection_failure_policy is ProtectionFailurePolicy.CLOSE:
                flatten = await self._emergency_close(run, size, exit_side, legs, reasons, resume=resume)
            else:
                out.protection = (
                    ProtectionState.PARTIAL if len(failed) < len(legs) else ProtectionState.UNPROTECTED
                )
                run.error(
                    ReasonCode.PROTECTION_FAILED,
                    ErrorSource.EXCHANGE,
                    f"position left {out.protection.value} by policy keep: {reasons}",
                )
                log.error("position.unprotected", intent_id=run.key, symbol=symbol, reasons=reasons)
        for leg in legs:
            if leg.kind == "SL":
                out.stop_loss = leg.to_contract()
            elif leg.kind == "TS":
                out.trailing_stop = leg.to_contract()
            else:
                out.take_profit = leg.to_contract()
                if leg.level is not None:
                    out.take_profits = [*(out.take_profits or []), out.take_profit]
        return flatten

    async def _place_leg(self, symbol: str, leg: Leg) -> None:
        """Place one leg under the leg placer's policy (:mod:`.legs`); records the order or the
        error. The client id of a leg found failed on resume is used again: Binance keeps
        ``clientAlgoId`` unique among open orders only, and a lookup by it answers the newest one."""
        assert leg.trigger_price is not None
        placed = await self._legs.place(
            LegOrder(
                symbol,
                leg.side,
                leg.order_type,
                leg.trigger_price,
                leg.client_algo_id,
                leg.quantity,
                leg.callback_rate,
                leg.activate_price,
                fallback_quantity=leg.fallback_quantity,
            )
        )
        leg.order, leg.error, leg.trigger_price = placed.order, placed.error, placed.trigger_price
        if placed.order is not None and not placed.order.close_position:
            leg.quantity = placed.order.quantity  # placed as a reduce-only quantity (after -4130)
        if not placed.standing:
            log.warning(
                "protection.failed",
                symbol=symbol,
                kind=leg.kind,
                client_algo_id=leg.client_algo_id,
                detail=leg.failure,
            )

    async def _emergency_close(
        self, run: Run, size: Decimal, exit_side: OrderSide, legs: list[Leg], reasons: str, *, resume: bool
    ) -> Order | None:
        """Close the just-opened position (``size``) at market, reduce-only, and cancel what was placed.

        An unknown outcome or a lost lease propagates (the intent is resumed and this close looked
        up by its client id); only a definite refusal ends in ``unprotected``.
        """
        symbol, out = run.intent.symbol, run.out
        for leg in legs:
            for armed in (leg.order, leg.replaces):  # a smaller copy too: its position goes
                if armed is not None and armed.status.is_armed:
                    with contextlib.suppress(PermanentError, RetryableError):
                        if await self._legs.cancel(armed.algo_id):
                            self.own.get(symbol, set()).discard(armed.algo_id)
                            if armed is leg.order:
                                leg.order = dataclasses.replace(armed, status=AlgoStatus.CANCELED)
        close_id = client_order_id(run.key, "flatten")
        try:
            order: Order | None = None
            if resume:
                order = await self._resolver.resolve(
                    run.earlier_sent_by, lambda: self._gateway.get_order(symbol, close_id)
                )
            if order is None:
                order = await self._resolver.submit(
                    symbol,
                    close_id,
                    lambda: self._gateway.place_market(symbol, exit_side, size, close_id, reduce_only=True),
                )
            order = await self._resolver.until_final(symbol, order)
        except UnknownOutcomeError:
            raise
        except ExchangeError as exc:
            out.protection = ProtectionState.UNPROTECTED
            out.status = ResultStatus.FAILED
            run.error(
                ReasonCode.PROTECTION_FAILED,
                ErrorSource.EXCHANGE,
                f"protection failed ({reasons}) and the emergency close failed too: {exc.message}",
            )
            log.error(
                "position.unprotected",
                intent_id=run.key,
                symbol=symbol,
                reasons=reasons,
                close_error=exc.message,
            )
            return None
        out.protection = ProtectionState.CLOSED_EMERGENCY
        out.status = ResultStatus.FAILED
        out.emergency_close = CloseFill(
            order_id=order.order_id,
            client_order_id=order.client_order_id,
            side=exit_side,
            quantity=size,
            executed_quantity=order.executed_qty,
            avg_price=order.avg_price,
            status=order.status,
        )
        run.error(
            ReasonCode.PROTECTION_FAILED,
            ErrorSource.EXCHANGE,
            f"protection failed ({reasons}); position closed at market by policy close",
        )
        log.error("position.closed_emergency", intent_id=run.key, symbol=symbol, reasons=reasons)
        return order


def trailing_leg(
    rules: SymbolRules, run: Run, price: Decimal, size: Decimal, exit_side: OrderSide, *, long: bool
) -> Leg | None:
    """The intent's native trailing stop: TRAILING_STOP_MARKET of the position's size (Binance takes
    no closePosition for it), activating at ``activation_price``, ``activation_pct`` from ``price``
    in the profit direction (rounded to the tick toward later: a long's up), or at once."""
    spec = run.intent.trailing_stop
    if spec is None:
        return None
    activation = spec.activation_price
    if activation is None and spec.activation_pct is not None:
        activation = trigger_from_pct(price, spec.activation_pct, long=long, kind="TP")
    if activation is not None:
        tick = rules.tick_size
        activation = ceil_to_step(activation, tick) if long else floor_to_step(activation, tick)
    return Leg(
        "TS",
        OrderType.TRAILING_STOP_MARKET,
        exit_side,
        client_order_id(run.key, "trail"),
        activation if activation is not None else Decimal(0),
        size,
        callback_rate=spec.callback_pct,
        activate_price=activation,
    )


def _fired(legs: list[Leg]) -> bool:
    """True when the trigger of a leg that closes all of it was crossed: the position is leaving
    (or left) through it (a ladder level closes only its share)."""
    return any(leg.closes_all and leg.order is not None and leg.order.status.has_fired for leg in legs)
