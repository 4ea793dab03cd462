"""Exchange rules of a symbol and the Decimal arithmetic that obeys them.

Pure: no I/O. Parsed from one ``exchangeInfo`` symbol; every size and trigger price sent to the
exchange goes through here, so an order never fails on -1111 / -4014 / -4023 / -4005 / -4164.

All arithmetic uses explicit contexts with ample precision and directed rounding, so a floor is
never a rounding-up in disguise and results are exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import (
    ROUND_CEILING,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
)
from typing import Any, Final, Literal

from quantum_exec.core.errors import IntentRejected, ReasonCode
from quantum_exec.core.settings import MaxQtyPolicy
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

TriggerKind = Literal["SL", "TP"]

_ZERO: Final = Decimal(0)
_HUNDRED: Final = Decimal(100)
_TRAPS: Final = [InvalidOperation, DivisionByZero, Overflow]
# 60 digits hold any product or quotient of two exchange values (at most ~25 digits each) exactly;
# where a quotient is inexact, the rounding direction is the one the caller asked for.
_FLOOR: Final = Context(prec=60, rounding=ROUND_FLOOR, traps=_TRAPS)
_CEIL: Final = Context(prec=60, rounding=ROUND_CEILING, traps=_TRAPS)
_EXACT: Final = Context(prec=60, rounding=ROUND_HALF_EVEN, traps=_TRAPS)
# Significant digits shown for an unrounded quantity in a message.
_SHOWN_DIGITS: Final = 10


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """The trading rules of one symbol. ``market_*`` apply to MARKET orders (MARKET_LOT_SIZE,
    with the LOT_SIZE value wherever MARKET_LOT_SIZE gives 0 or nothing)."""

    symbol: str
    status: str
    contract_type: str
    base_asset: str
    quote_asset: str
    margin_asset: str
    tick_size: Decimal
    min_price: Decimal
    max_price: Decimal
    min_qty: Decimal
    max_qty: Decimal
    step_size: Decimal
    market_min_qty: Decimal
    market_max_qty: Decimal
    market_step_size: Decimal
    min_notional: Decimal
    multiplier_up: Decimal | None = None
    multiplier_down: Decimal | None = None
    multiplier_decimal: int | None = None

    @property
    def trading(self) -> bool:
        """True when the symbol accepts new orders."""
        return self.status == "TRADING"

    @classmethod
    def from_exchange_info(cls, raw: Mapping[str, Any]) -> SymbolRules:
        """Parse one element of ``exchangeInfo["symbols"]``; raises ValueError/KeyError if malformed.

        ``pricePrecision``/``quantityPrecision`` are deliberately ignored: they are not the tick
        and step (BTCUSDT: pricePrecision 2, tickSize 0.10).
        """
        filters = {f["filterType"]: f for f in raw.get("filters", ()) if isinstance(f, Mapping)}
        price = filters["PRICE_FILTER"]
        lot = filters["LOT_SIZE"]
        market = filters.get("MARKET_LOT_SIZE", {})
        percent = filters.get("PERCENT_PRICE")
        step = _dec(lot["stepSize"])
        min_qty = _dec(lot["minQty"])
        max_qty = _dec(lot["maxQty"])
        tick = _dec(price["tickSize"])
        if step <= 0 or tick < 0:
            raise ValueError(f"{raw.get('symbol')}: stepSize must be > 0 and tickSize >= 0")
        return cls(
            symbol=str(raw["symbol"]),
            status=str(raw.get("status", "")),
            contract_type=str(raw.get("contractType", "")),
            base_asset=str(raw.get("baseAsset", "")),
            quote_asset=str(raw.get("quoteAsset", "")),
            margin_asset=str(raw.get("marginAsset", "")),
            tick_size=tick,
            min_price=_dec(price.get("minPrice", "0")),
            max_price=_dec(price.get("maxPrice", "0")),
            min_qty=min_qty,
            max_qty=max_qty,
            step_size=step,
            market_min_qty=_positive_or(market.get("minQty"), min_qty),
            market_max_qty=_positive_or(market.get("maxQty"), max_qty),
            market_step_size=_positive_or(market.get("stepSize"), step),
            min_notional=_dec(filters.get("MIN_NOTIONAL", {}).get("notional", "0")),
            multiplier_up=_dec(percent["multiplierUp"]) if percent else None,
            multiplier_down=_dec(percent["multiplierDown"]) if percent else None,
            multiplier_decimal=int(percent["multiplierDecimal"]) if percent else None,
        )


def _dec(value: Any) -> Decimal:
    # Binance sends these as strings; a number here would already have lost digits in float.
    result = Decimal(str(value))
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def _positive_or(value: Any, fallback: Decimal) -> Decimal:
    if value is None:
        return fallback
    parsed = _dec(value)
    return parsed if parsed > 0 else fallback


def parse_exchange_info(raw: Mapping[str, Any]) -> dict[str, SymbolRules]:
    """Rules of every symbol in an exchangeInfo response, by symbol.

    A malformed symbol is skipped with a warning (it then counts as unknown) rather than making
    the whole table unusable; unknown filter types are ignored.
    """
    rules: dict[str, SymbolRules] = {}
    for entry in raw.get("symbols", ()):
        try:
            if not isinstance(entry, Mapping):
                raise TypeError(f"symbol entry is a {type(entry).__name__}, not an object")
            parsed = SymbolRules.from_exchange_info(entry)
        except (KeyError, ValueError, TypeError, AttributeError, InvalidOperation) as exc:
            log.warning("exchange_info.symbol_skipped", symbol=_name(entry), error=repr(exc))
            continue
        rules[parsed.symbol] = parsed
    return rules


def _name(entry: Any) -> str:
    return str(entry.get("symbol", "?")) if isinstance(entry, Mapping) else "?"


def fmt(value: Decimal) -> str:
    """Plain decimal text for the exchange: no exponent, no superfluous trailing zeros.

    ``Decimal("1E-7")`` -> ``"0.0000001"``, ``Decimal("95234.50")`` -> ``"95234.5"``.
    """
    if not value.is_finite():
        raise ValueError(f"cannot format {value} for the exchange")
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """The largest multiple of ``step`` not above ``value`` (``value`` itself when step is 0)."""
    if step == 0:
        return value
    units = _FLOOR.divide(value, step).to_integral_value(rounding=ROUND_FLOOR, context=_FLOOR)
    return _EXACT.multiply(units, step)


def ceil_to_step(value: Decimal, step: Decimal) -> Decimal:
    """The smallest multiple of ``step`` not below ``value`` (``value`` itself when step is 0)."""
    if step == 0:
        return value
    units = _CEIL.divide(value, step).to_integral_value(rounding=ROUND_CEILING, context=_CEIL)
    return _EXACT.multiply(units, step)


def _short(value: Decimal) -> str:
    # An unrounded quotient can carry 60 digits; a message needs ten.
    return fmt(Context(prec=_SHOWN_DIGITS, rounding=ROUND_FLOOR).plus(value))


def size_quantity(
    rules: SymbolRules,
    *,
    price: Decimal,
    notional_usd: Decimal | None = None,
    quantity: Decimal | None = None,
    max_qty_policy: MaxQtyPolicy = MaxQtyPolicy.REJECT,
) -> Decimal:
    """The MARKET order quantity for ``notional_usd`` at ``price`` (or the given ``quantity``).

    Floored to the MARKET_LOT_SIZE step (never rounds up: the order must not exceed what was
    asked). Above maxQty: clamp to it or reject (``QTY_ABOVE_MAX``) per ``max_qty_policy``; ``split``
    keeps the whole quantity (the caller sends it as child orders of at most maxQty each).
    Raises :class:`IntentRejected` with ``QTY_BELOW_MIN`` or ``NOTIONAL_BELOW_MIN`` and a message
    stating the numbers. ``quantity`` wins when both are given.
    """
    if price <= 0:
        raise IntentRejected(ReasonCode.INVALID_FIELD, f"price must be > 0 for {rules.symbol} (got {price})")
    if quantity is not None:
        raw_qty = quantity
        asked = f"quantity {_short(raw_qty)}"
    elif notional_usd is not None:
        raw_qty = _FLOOR.divide(notional_usd, price)
        asked = f"quantity {_short(raw_qty)} ({fmt(notional_usd)} {rules.quote_asset or 'USD'})"
    else:
        raise ValueError("size_quantity needs notional_usd or quantity")
    where = f"for {rules.symbol} at {fmt(price)}"
    step = rules.market_step_size
    qty = floor_to_step(raw_qty, step)
    max_qty = rules.market_max_qty
    if max_qty > 0 and qty > max_qty and max_qty_policy is not MaxQtyPolicy.SPLIT:
        if max_qty_policy is not MaxQtyPolicy.CLAMP:
            raise IntentRejected(ReasonCode.QTY_ABOVE_MAX, f"{asked} above maxQty {fmt(max_qty)} {where}")
        qty = floor_to_step(max_qty, step)
    if qty <= 0 or qty < rules.market_min_qty:
        raise IntentRejected(
            ReasonCode.QTY_BELOW_MIN, f"{asked} below minQty {fmt(rules.market_min_qty)} {where}"
        )
    notional = _EXACT.multiply(qty, price)
    if notional < rules.min_notional:
        raise IntentRejected(
            ReasonCode.NOTIONAL_BELOW_MIN,
            f"notional {fmt(notional)} (quantity {fmt(qty)}) below minimum {fmt(rules.min_notional)} {where}",
        )
    return qty


def _rounds_up(*, long: bool, kind: TriggerKind) -> bool:
    # The safe side is the one that triggers earlier: a long's SL higher, its TP lower; mirrored
    # for a short.
    return long == (kind == "SL")


def round_trigger(rules: SymbolRules, price: Decimal, *, long: bool, kind: TriggerKind) -> Decimal:
    """Round a trigger price to tickSize toward the safe side, within the symbol's price range.

    Long SL rounds up, long TP down; short SL down, short TP up. A result outside
    [minPrice, maxPrice] is pulled inside when that is also toward the safe side; otherwise the
    trigger is unusable and :class:`IntentRejected` (``INVALID_FIELD``) is raised.
    """
    up = _rounds_up(long=long, kind=kind)
    tick = rules.tick_size
    rounded = ceil_to_step(price, tick) if up else floor_to_step(price, tick)
    field = "stop_loss" if kind == "SL" else "take_profit"
    low = ceil_to_step(rules.min_price, tick) if rules.min_price > 0 else tick
    if rounded < low:
        if not up:
            raise IntentRejected(
                ReasonCode.INVALID_FIELD, f"{field} {fmt(price)} below minPrice {fmt(low)} for {rules.symbol}"
            )
        rounded = low
    if rules.max_price > 0:
        high = floor_to_step(rules.max_price, tick)
        if rounded > high:
            if up:
                raise IntentRejected(
                    ReasonCode.INVALID_FIELD,
                    f"{field} {fmt(price)} above maxPrice {fmt(high)} for {rules.symbol}",
                )
            rounded = high
    return rounded


def trigger_from_pct(reference: Decimal, pct: Decimal, *, long: bool, kind: TriggerKind) -> Decimal:
    """The raw trigger ``pct`` percent away from ``reference`` on the protective side (unrounded).

    Long SL = ref x (1 - pct/100), long TP = ref x (1 + pct/100); mirrored for a short.
    """
    if not 0 < pct < _HUNDRED:
        raise IntentRejected(ReasonCode.INVALID_FIELD, f"percent must be between 0 and 100 (got {pct})")
    below = long == (kind == "SL")
    factor = (
        _EXACT.subtract(1, _EXACT.divide(pct, _HUNDRED))
        if below
        else _EXACT.add(1, _EXACT.divide(pct, _HUNDRED))
    )
    return _EXACT.multiply(reference, factor)


def check_protection(
    rules: SymbolRules, *, long: bool, reference: Decimal, sl: Decimal | None, tp: Decimal | None
) -> None:
    """Check SL/TP against the reference (fill) price before placing them.

    A long needs SL < reference < TP, a short TP < reference < SL (``SL_TP_WRONG_SIDE``); each
    trigger must be at least one tick from the reference (``SL_TP_TOO_CLOSE``).
    """
    direction = "long" if long else "short"
    for name, trigger, must_be_below in (("stop_loss", sl, long), ("take_profit", tp, not long)):
        if trigger is None:
            continue
        on_side = trigger < reference if must_be_below else trigger > reference
        if not on_side:
            where = "below" if must_be_below else "above"
            raise IntentRejected(
                ReasonCode.SL_TP_WRONG_SIDE,
                f"{name} {fmt(trigger)} must be {where} the reference {fmt(reference)} "
                f"for a {direction} {rules.symbol}",
            )
        if abs(_EXACT.subtract(reference, trigger)) < rules.tick_size:
            raise IntentRejected(
                ReasonCode.SL_TP_TOO_CLOSE,
                f"{name} {fmt(trigger)} is less than one tick ({fmt(rules.tick_size)}) from the "
                f"reference {fmt(reference)} for {rules.symbol}",
            )
