"""The pre-trade guards: every check an intent passes before any order may be sent."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from quantum_exec.contracts import TradeIntent
from quantum_exec.core.errors import IntentRejected, ReasonCode
from quantum_exec.core.rules import (
    SymbolRules,
    ceil_to_step,
    check_protection,
    floor_to_step,
    fmt,
    round_trigger,
    size_quantity,
    trigger_from_pct,
)
from quantum_exec.core.settings import LeveragePolicy, MaxQtyPolicy, Settings
from quantum_exec.execution.ports import Gateway
from quantum_exec.execution.run import Run
from quantum_exec.execution.stops.checks import check_ladder
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

HUNDRED = Decimal(100)


def wants_protection(intent: TradeIntent) -> bool:
    """True when the intent asks for a stop or a target (a reduce-only intent never does)."""
    return not intent.reduce_only and any(
        v is not None
        for v in (
            intent.stop_loss,
            intent.take_profit,
            intent.stop_loss_pct,
            intent.take_profit_pct,
            intent.take_profits,
            intent.trailing_stop,
        )
    )


def limit_price(rules: SymbolRules, intent: TradeIntent, reference: Decimal, *, long: bool) -> Decimal:
    """The LIMIT price: given, or ``limit_offset_pct`` from the reference toward the passive side;
    rounded to the tick toward the passive side (a BUY down, a SELL up) and checked against
    PRICE_FILTER and PERCENT_PRICE, with the numbers in the reason."""
    if intent.price is not None:
        raw = intent.price
        asked = f"price {fmt(raw)}"
    else:
        assert intent.limit_offset_pct is not None
        factor = (HUNDRED - intent.limit_offset_pct) if long else (HUNDRED + intent.limit_offset_pct)
        raw = reference * factor / HUNDRED
        asked = f"limit_offset_pct {fmt(intent.limit_offset_pct)} from {fmt(reference)}"
    price = floor_to_step(raw, rules.tick_size) if long else ceil_to_step(raw, rules.tick_size)
    where = f"for {rules.symbol}"
    if price <= 0 or price < rules.min_price or (rules.max_price > 0 and price > rules.max_price):
        raise IntentRejected(
            ReasonCode.PRICE_OUT_OF_RANGE,
            f"{asked} gives {fmt(price)}, outside {fmt(rules.min_price)}..{fmt(rules.max_price)} {where}",
        )
    up, down = rules.multiplier_up, rules.multiplier_down
    if up is not None and down is not None and not (reference * down <= price <= reference * up):
        raise IntentRejected(
            ReasonCode.PRICE_OUT_OF_RANGE,
            f"{asked} gives {fmt(price)}, outside PERCENT_PRICE "
            f"{fmt(reference * down)}..{fmt(reference * up)} (reference {fmt(reference)}) {where}",
        )
    return price


class Guards:
    """Symbol, freshness, leverage, size, notional and trigger checks, with the numbers in each reason."""

    def __init__(self, settings: Settings, gateway: Gateway) -> None:
        self._settings = settings
        self._gateway = gateway

    def rules_for(self, symbol: str) -> SymbolRules:
        """The symbol's rules, or a rejection saying why it cannot be traded."""
        s = self._settings
        if s.symbol_allowlist and symbol not in s.symbol_allowlist:
            raise IntentRejected(
                ReasonCode.SYMBOL_NOT_ALLOWED, f"{symbol} is not in QUANTUM_SYMBOL_ALLOWLIST"
            )
        rules = self._gateway.rules.get(symbol)
        if rules is None:
            raise IntentRejected(ReasonCode.UNKNOWN_SYMBOL, f"{symbol} is not a symbol of this exchange")
        if rules.status != "TRADING":
            raise IntentRejected(ReasonCode.SYMBOL_NOT_TRADING, f"{symbol} is {rules.status}, not TRADING")
        if rules.contract_type != "PERPETUAL" and not s.allow_non_perpetual:
            raise IntentRejected(
                ReasonCode.CONTRACT_NOT_ALLOWED,
                f"{symbol} is a {rules.contract_type} contract; only perpetuals are executable "
                "(QUANTUM_ALLOW_NON_PERPETUAL)",
            )
        return rules

    def check_fresh(self, run: Run) -> None:
        """Reject an intent older than ``QUANTUM_INTENT_TTL_S`` or stamped in the future.

        Without a ``timestamp`` the intent ages from its stream id's time (when it was published),
        so an old backlog never executes. A timestamp more than ``QUANTUM_MAX_CLOCK_SKEW_S`` ahead
        of our clock is a producer bug (or a clock far off): rejected, naming the value.
        """
        s, now = self._settings, run.received_at
        origin = run.ttl_origin()
        if origin is None:
            return
        created, source = origin
        age_s = (now - created).total_seconds()
        if age_s < -s.max_clock_skew_s:
            raise IntentRejected(
                ReasonCode.INVALID_FIELD,
                f"timestamp: {created.isoformat()} is {-age_s:.1f}s in the future "
                f"(more than QUANTUM_MAX_CLOCK_SKEW_S={s.max_clock_skew_s:g})",
            )
        if age_s > s.intent_ttl_s:
            raise IntentRejected(
                ReasonCode.STALE_INTENT,
                f"{source} {age_s:.1f}s ago, older than QUANTUM_INTENT_TTL_S={s.intent_ttl_s:g}",
            )

    async def leverage_for(self, run: Run, symbol: str) -> int:
        """The leverage to set: the intent's or the default, within our limit and the symbol's."""
        s = self._settings
        leverage = run.intent.leverage or s.default_leverage
        if leverage > s.max_leverage:
            raise IntentRejected(
                ReasonCode.LEVERAGE_ABOVE_LIMIT,
                f"leverage {leverage} above QUANTUM_MAX_LEVERAGE={s.max_leverage}",
            )
        bracket_max = await self._gateway.max_leverage(symbol)
        if bracket_max is not None and leverage > bracket_max:
            if s.leverage_policy is LeveragePolicy.REJECT:
                raise IntentRejected(
                    ReasonCode.LEVERAGE_ABOVE_LIMIT,
                    f"leverage {leverage} above the maximum {bracket_max} of {symbol}",
                )
            log.info("leverage.capped", intent_id=run.key, symbol=symbol, requested=leverage, cap=bracket_max)
            leverage = bracket_max
        return leverage

    @staticmethod
    def triggers(
        rules: SymbolRules, intent: TradeIntent, *, long: bool, price: Decimal
    ) -> tuple[Decimal | None, Decimal | None]:
        """Rounded SL/TP trigger prices: absolute ones as given, percentages from ``price``."""
        sl = intent.stop_loss
        if sl is None and intent.stop_loss_pct is not None:
            sl = trigger_from_pct(price, intent.stop_loss_pct, long=long, kind="SL")
        tp = intent.take_profit
        if tp is None and intent.take_profit_pct is not None:
            tp = trigger_from_pct(price, intent.take_profit_pct, long=long, kind="TP")
        return (
            round_trigger(rules, sl, long=long, kind="SL") if sl is not None else None,
            round_trigger(rules, tp, long=long, kind="TP") if tp is not None else None,
        )

    async def pre_trade(self, run: Run, *, long: bool) -> tuple[SymbolRules, Decimal, Decimal]:
        """Every check before an order may be sent: returns the rules, reference price and quantity."""
        intent, s, out = run.intent, self._settings, run.out
        symbol = intent.symbol
        self.check_fresh(run)
        if (
            s.require_protection
            and not intent.reduce_only
            and (intent.stop_loss is None and intent.stop_loss_pct is None)
        ):
            raise IntentRejected(
                ReasonCode.PROTECTION_REQUIRED,
                f"{intent.side.value} {symbol} has no stop_loss or stop_loss_pct and "
                "QUANTUM_REQUIRE_PROTECTION=true: a position is never opened without a stop",
            )
        rules = self.rules_for(symbol)
        out.leverage = await self.leverage_for(run, symbol)
        out.margin_type = (intent.margin_type or s.default_margin_type).value
        reference = intent.entry_price
        if reference is None:
            with run.step("mark_price"):
                reference = await self._gateway.mark_price(symbol)
        sizing, policy = rules, s.max_qty_policy
        if intent.order_type != "MARKET":
            # One order: never split (a resting LIMIT's LOT_SIZE maxQty is far above MARKET_LOT_SIZE's).
            policy = MaxQtyPolicy.REJECT if policy is MaxQtyPolicy.SPLIT else policy
        if intent.stop_price is not None:
            # A stop entry: sized and checked at its trigger (its limit price for a STOP), a BUY's
            # trigger rounded up to the tick and a SELL's down (never earlier than asked).
            stop = (
                ceil_to_step(intent.stop_price, rules.tick_size)
                if long
                else floor_to_step(intent.stop_price, rules.tick_size)
            )
            if stop < rules.min_price or (rules.max_price > 0 and stop > rules.max_price):
                raise IntentRejected(
                    ReasonCode.PRICE_OUT_OF_RANGE,
                    f"stop_price {fmt(intent.stop_price)} gives {fmt(stop)}, outside "
                    f"{fmt(rules.min_price)}..{fmt(rules.max_price)} for {symbol}",
                )
            run.stop_price = stop
            if intent.order_type == "STOP":
                run.limit_price = limit_price(rules, intent, stop, long=long)
            reference = run.limit_price or stop
        if intent.order_type in ("LIMIT", "STOP"):
            if intent.order_type == "LIMIT":
                run.limit_price = reference = limit_price(rules, intent, reference, long=long)
            # A LIMIT order is sized by LOT_SIZE, not MARKET_LOT_SIZE, and its notional at its price.
            sizing = replace(
                rules,
                market_min_qty=rules.min_qty,
                market_max_qty=rules.max_qty,
                market_step_size=rules.step_size,
            )
        out.reference_price = reference
        quantity = size_quantity(
            sizing,
            price=reference,
            notional_usd=intent.position_size_usd,
            quantity=intent.quantity,
            max_qty_policy=policy,
        )
        notional_usd = intent.position_size_usd or Decimal(0)
        out.requested_quantity = intent.quantity if intent.quantity is not None else notional_usd / reference
        out.quantity = quantity
        if quantity * reference > s.max_notional_usd:
            raise IntentRejected(
                ReasonCode.NOTIONAL_ABOVE_LIMIT,
                f"notional {quantity * reference} above QUANTUM_MAX_NOTIONAL_USD={s.max_notional_usd}",
            )
        if wants_protection(intent):
            # Reject a wrong-side intent before any order reaches the exchange.
            sl, tp = self.triggers(rules, intent, long=long, price=reference)
            check_protection(rules, long=long, reference=reference, sl=sl, tp=tp)
            check_ladder(rules, intent, long=long, reference=reference, quantity=quantity)
        return rules, reference, quantity
