"""The governor's limits: from the settings, changed at run time, and the exposure checks (pure).

Each limit is optional (None: off). A run-time change (the control API) is kept in Redis by name
(``max_gross_notional_usd``; the environment variable's name is accepted too) and wins over the
setting; ``default`` drops it (the setting applies again), ``off`` switches the limit off.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from quantum_exec.core.errors import QuantumError
from quantum_exec.core.rules import fmt
from quantum_exec.core.settings import DailyLossAction, Settings

ENV_PREFIX: Final = "QUANTUM_RISK_"
OFF: Final = "off"
DEFAULT: Final = "default"


class LimitError(QuantumError):
    """A limit's name or value is wrong; the message names it."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Every limit of the governor (None: off)."""

    max_daily_loss_usd: Decimal | None = None
    on_daily_loss: DailyLossAction = DailyLossAction.REDUCE
    max_drawdown_pct: Decimal | None = None
    max_gross_notional_usd: Decimal | None = None
    max_symbol_notional_usd: Decimal | None = None
    max_open_positions: int | None = None
    max_leverage: int | None = None
    min_liq_distance_pct: Decimal | None = None
    max_intents_per_min: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(**{f.name: getattr(settings, f"risk_{f.name}") for f in fields(cls)})

    def with_overrides(self, overrides: Mapping[str, str]) -> Limits:
        """These limits with the run-time values over them (each checked as :func:`parse_limit`)."""
        changed = {name: parse_limit(name, raw)[1] for name, raw in overrides.items() if name in NAMES}
        return replace(self, **changed)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def needs_book(self) -> bool:
        """True when an entry's check needs the account's positions."""
        return any(
            v is not None
            for v in (self.max_gross_notional_usd, self.max_symbol_notional_usd, self.max_open_positions)
        )


NAMES: Final = frozenset(f.name for f in fields(Limits))
_INTS: Final = frozenset({"max_open_positions", "max_leverage", "max_intents_per_min"})


def limit_name(key: str) -> str:
    """``max_leverage`` from itself or ``QUANTUM_RISK_MAX_LEVERAGE``; LimitError naming an unknown one."""
    name = key.strip()
    if name.upper().startswith(ENV_PREFIX):
        name = name[len(ENV_PREFIX) :]
    name = name.lower()
    if name not in NAMES:
        raise LimitError(f"unknown limit {key!r}; the limits are {', '.join(sorted(NAMES))}")
    return name


def parse_limit(key: str, raw: Any) -> tuple[str, Any]:
    """(name, value) of one run-time limit; ``off`` is None; LimitError naming a bad value."""
    name = limit_name(key)
    text = str(raw).strip()
    if text.lower() == OFF:
        if name == "on_daily_loss":
            raise LimitError(f"on_daily_loss={text!r}: one of reduce, halt, halt_flatten")
        return name, None
    if name == "on_daily_loss":
        try:
            return name, DailyLossAction(text.lower())
        except ValueError:
            raise LimitError(f"on_daily_loss={text!r}: one of reduce, halt, halt_flatten") from None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise LimitError(f"{name}={text!r} is not a number (or 'off', or 'default')") from None
    if not value.is_finite() or value <= 0:
        raise LimitError(f"{name}={text!r} must be a number above 0")
    if name.endswith("_pct") and value >= 100:
        raise LimitError(f"{name}={text!r} must be below 100 (percent)")
    if name in _INTS:
        if value != value.to_integral_value():
            raise LimitError(f"{name}={text!r} must be a whole number")
        return name, int(value)
    return name, value


@dataclass(frozen=True, slots=True)
class Holding:
    """One open position as the check sees it: signed amount, mark price, leverage set."""

    symbol: str
    amount: Decimal
    mark_price: Decimal
    leverage: int | None = None

    @property
    def notional(self) -> Decimal:
        return abs(self.amount) * self.mark_price


@dataclass(frozen=True, slots=True)
class Breach:
    """A limit an intent would cross: which, the figure now, after the intent, and the maximum."""

    limit: str
    current: Decimal
    after: Decimal
    maximum: Decimal

    @property
    def message(self) -> str:
        return (
            f"{self.limit}: {fmt(self.current)} now, {fmt(self.after)} after this intent, "
            f"above the limit {fmt(self.maximum)} ({ENV_PREFIX}{self.limit.upper()})"
        )

    def to_json(self) -> dict[str, Any]:
        return {"limit": self.limit, "current": self.current, "after": self.after, "max": self.maximum}


def check_entry(
    limits: Limits,
    book: Iterable[Holding],
    *,
    symbol: str,
    quantity: Decimal,
    price: Decimal,
    long: bool,
    leverage: int,
) -> Breach | None:
    """The first limit an entry of ``quantity`` at ``price`` would cross (leverage, symbol
    notional, gross notional, open positions), or None."""
    holdings = {h.symbol: h for h in book if h.amount != 0}
    held = holdings.get(symbol)
    if limits.max_leverage is not None and leverage > limits.max_leverage:
        current = Decimal(held.leverage or 0) if held is not None else Decimal(0)
        return Breach("max_leverage", current, Decimal(leverage), Decimal(limits.max_leverage))
    amount = held.amount if held is not None else Decimal(0)
    mark = held.mark_price if held is not None and held.mark_price > 0 else price
    current_symbol = abs(amount) * mark
    after_amount = amount + (quantity if long else -quantity)
    after_symbol = abs(after_amount) * max(mark, price) if after_amount else Decimal(0)
    cap = limits.max_symbol_notional_usd
    if cap is not None and after_symbol > cap:
        return Breach("max_symbol_notional_usd", current_symbol, after_symbol, cap)
    gross = sum((h.notional for h in holdings.values()), Decimal(0))
    gross_after = gross - current_symbol + after_symbol
    cap = limits.max_gross_notional_usd
    if cap is not None and gross_after > cap:
        return Breach("max_gross_notional_usd", gross, gross_after, cap)
    count = len(holdings)
    count_after = count + (1 if amount == 0 and after_amount != 0 else 0)
    if limits.max_open_positions is not None and count_after > limits.max_open_positions:
        return Breach(
            "max_open_positions", Decimal(count), Decimal(count_after), Decimal(limits.max_open_positions)
        )
    return None


def with_reserved(book: Iterable[Holding], reserved: Iterable[Holding]) -> list[Holding]:
    """The positions as they are once every reserved entry (signed amount at its price) has
    filled: a reservation adds to its symbol's position, or opens one at its price."""
    merged = {h.symbol: h for h in book if h.amount != 0}
    for each in reserved:
        held = merged.get(each.symbol)
        if held is None:
            merged[each.symbol] = each
        else:
            mark = held.mark_price if held.mark_price > 0 else each.mark_price
            merged[each.symbol] = Holding(each.symbol, held.amount + each.amount, mark, held.leverage)
    return [h for h in merged.values() if h.amount != 0]
