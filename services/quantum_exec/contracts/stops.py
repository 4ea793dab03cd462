"""The stop-management fields of an intent (issue #27): a take-profit ladder, a break-even move, a
native trailing stop, a partial CLOSE, and the MODIFY action that changes an open position's
protection. One validator per field (registered in :data:`STOP_FIELDS`, which
:mod:`.fields` folds into the one table that drives the parser and the JSON Schema) and
:func:`check_stops`, the rules between the fields (kept apart from the entry's checks).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, model_validator

from quantum_exec.contracts.enums import Side
from quantum_exec.contracts.fields import _percent, _positive, _reject, _to_decimal
from quantum_exec.core.errors import IntentRejected, ReasonCode

MAX_TP_LEVELS: Final = 5
# Binance's callbackRate bounds for TRAILING_STOP_MARKET (percent).
MIN_CALLBACK_PCT: Final = Decimal("0.1")
MAX_CALLBACK_PCT: Final = Decimal(20)
_HUNDRED: Final = Decimal(100)
# What a MODIFY may change (at least one of them).
MODIFY_FIELDS: Final = (
    "stop_loss",
    "stop_loss_pct",
    "take_profit",
    "take_profit_pct",
    "take_profits",
    "trailing_stop",
    "break_even_after",
)
# Entry fields a MODIFY has no use for: it changes protection, it sends no entry.
_NOT_FOR_MODIFY: Final = (
    "quantity",
    "position_size_usd",
    "entry_price",
    "leverage",
    "margin_type",
    "reduce_only",
    "order_type",
    "price",
    "stop_price",
    "limit_offset_pct",
    "time_in_force",
    "expire_after_s",
    "execution",
    "close_pct",
)


class TakeProfitLevel(BaseModel):
    """One level of a take-profit ladder: a trigger (absolute ``price``, or ``pct`` from the entry
    price) and the share of the position it closes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    price: Decimal | None = None
    pct: Decimal | None = None
    size_pct: Decimal


class TrailingStop(BaseModel):
    """A native TRAILING_STOP_MARKET: ``callback_pct`` (Binance's callbackRate) and where it
    activates (``activation_price``, or ``activation_pct`` from the entry price in the profit
    direction; neither: at once, from the mark when placed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    callback_pct: Decimal
    activation_price: Decimal | None = None
    activation_pct: Decimal | None = None

    @model_validator(mode="after")
    def _one_activation(self) -> TrailingStop:
        if self.activation_price is not None and self.activation_pct is not None:
            raise ValueError("activation_price and activation_pct are exclusive")
        return self


def _object(field: str, raw: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _reject(field, f"must be an object with {', '.join(keys)}", raw)
    unknown = sorted(str(k) for k in raw if k not in keys)
    if unknown:
        raise _reject(f"{field}.{unknown[0]}", f"unknown key ({', '.join(keys)})", raw[unknown[0]])
    return {k: v for k, v in raw.items() if v is not None}


def _take_profits(field: str, raw: Any) -> tuple[TakeProfitLevel, ...]:
    if isinstance(raw, tuple) and all(isinstance(level, TakeProfitLevel) for level in raw):
        return raw
    if not isinstance(raw, list | tuple) or not 1 <= len(raw) <= MAX_TP_LEVELS:
        raise _reject(field, f"must be a list of 1..{MAX_TP_LEVELS} levels", raw)
    levels: list[TakeProfitLevel] = []
    total = Decimal(0)
    for n, item in enumerate(raw, start=1):
        name = f"{field}[{n}]"
        if isinstance(item, TakeProfitLevel):
            item = item.model_dump(exclude_none=True)
        level = _object(name, item, ("price", "pct", "size_pct"))
        if ("price" in level) == ("pct" in level):
            raise _reject(name, "needs exactly one of price and pct", item)
        if "size_pct" not in level:
            raise _reject(f"{name}.size_pct", "required: the percent of the position this level closes", None)
        size = _positive(f"{name}.size_pct", level["size_pct"])
        if size > _HUNDRED:
            raise _reject(f"{name}.size_pct", "must be at most 100", level["size_pct"])
        total += size
        if "price" in level:
            levels.append(TakeProfitLevel(price=_positive(f"{name}.price", level["price"]), size_pct=size))
        else:
            levels.append(TakeProfitLevel(pct=_percent(f"{name}.pct", level["pct"]), size_pct=size))
    if total > _HUNDRED:
        raise _reject(field, f"sizes sum to {total:f} %, above 100 %", raw)
    return tuple(levels)


def _break_even_after(field: str, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str | Decimal | float):
        raise _reject(field, f"must be a take-profit level number 1..{MAX_TP_LEVELS}", raw)
    value = _to_decimal(field, raw)
    if value != value.to_integral_value() or not 1 <= value <= MAX_TP_LEVELS:
        raise _reject(field, f"must be a take-profit level number 1..{MAX_TP_LEVELS}", raw)
    return int(value)


def _trailing_stop(field: str, raw: Any) -> TrailingStop:
    if isinstance(raw, TrailingStop):
        return raw
    spec = _object(field, raw, ("callback_pct", "activation_price", "activation_pct"))
    if "callback_pct" not in spec:
        raise _reject(f"{field}.callback_pct", "required: the callback rate in percent (0.1..20)", None)
    rate = _positive(f"{field}.callback_pct", spec["callback_pct"])
    if not MIN_CALLBACK_PCT <= rate <= MAX_CALLBACK_PCT:
        raise _reject(
            f"{field}.callback_pct",
            f"must be between {MIN_CALLBACK_PCT} and {MAX_CALLBACK_PCT} (Binance's callbackRate)",
            spec["callback_pct"],
        )
    if rate % MIN_CALLBACK_PCT != 0:
        raise _reject(f"{field}.callback_pct", "at most one decimal (Binance's callbackRate step 0.1)", rate)
    if "activation_price" in spec and "activation_pct" in spec:
        raise _reject(field, "needs at most one of activation_price and activation_pct", raw)
    if "activation_price" in spec:
        return TrailingStop(
            callback_pct=rate,
            activation_price=_positive(f"{field}.activation_price", spec["activation_price"]),
        )
    if "activation_pct" in spec:
        return TrailingStop(
            callback_pct=rate, activation_pct=_percent(f"{field}.activation_pct", spec["activation_pct"])
        )
    return TrailingStop(callback_pct=rate)


def _close_pct(field: str, raw: Any) -> Decimal:
    value = _positive(field, raw)
    if value > _HUNDRED:
        raise _reject(field, "must be a percentage of the position, at most 100", raw)
    return value


_NUMBER: Final[dict[str, Any]] = {"type": ["number", "string"]}
STOP_FIELDS: Final[dict[str, tuple[Callable[[str, Any], Any], dict[str, Any]]]] = {
    "take_profits": (
        _take_profits,
        {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_TP_LEVELS,
            "items": {
                "type": "object",
                "properties": {
                    "price": {**_NUMBER, "description": "absolute trigger price, > 0"},
                    "pct": {**_NUMBER, "description": "percent from the entry price, 0 < pct < 100"},
                    "size_pct": {**_NUMBER, "description": "percent of the position, 0 < size <= 100"},
                },
                "required": ["size_pct"],
                "oneOf": [{"required": ["price"]}, {"required": ["pct"]}],
                "additionalProperties": False,
            },
            "description": "take-profit ladder: each level a reduce-only TAKE_PROFIT_MARKET sized to "
            "the LOT_SIZE step (the rounding remainder on the last level; a level below minQty merges "
            "into the next); sizes sum to at most 100; exclusive with take_profit(_pct)",
        },
    ),
    "break_even_after": (
        _break_even_after,
        {
            "type": ["integer", "string"],
            "minimum": 1,
            "maximum": MAX_TP_LEVELS,
            "description": "after take-profit level n fills, the stop moves to the entry price "
            "adjusted for the fees paid (rounded to the tick on the safe side)",
        },
    ),
    "trailing_stop": (
        _trailing_stop,
        {
            "type": "object",
            "properties": {
                "callback_pct": {
                    **_NUMBER,
                    "minimum": float(MIN_CALLBACK_PCT),
                    "maximum": float(MAX_CALLBACK_PCT),
                    "description": "Binance's callbackRate, percent, one decimal",
                },
                "activation_price": {**_NUMBER, "description": "Binance's activatePrice, > 0"},
                "activation_pct": {
                    **_NUMBER,
                    "description": "activation this percent from the entry price, in the profit direction",
                },
            },
            "required": ["callback_pct"],
            "additionalProperties": False,
            "description": "a native TRAILING_STOP_MARKET (Algo Order API), alone or beside a fixed stop",
        },
    ),
    "close_pct": (
        _close_pct,
        {**_NUMBER, "description": "CLOSE only: close this percent of the position (0 < pct <= 100)"},
    ),
}


def check_stops(values: dict[str, Any], side: Side) -> None:
    """The stop-management fields agree with each other and with the action (raises
    :class:`IntentRejected` naming the field)."""
    ladder: tuple[TakeProfitLevel, ...] | None = values.get("take_profits")
    if ladder is not None:
        for single in ("take_profit", "take_profit_pct"):
            if single in values:
                raise IntentRejected(
                    ReasonCode.INVALID_FIELD, f"{single}: send either take_profits or {single}, not both"
                )
    after = values.get("break_even_after")
    if after is not None and side is not Side.MODIFY:
        levels = len(ladder) if ladder is not None else 0
        if after > levels:
            raise IntentRejected(
                ReasonCode.INVALID_FIELD,
                f"break_even_after: level {after} needs a take_profits ladder of at least {after} "
                f"level(s) (got {levels})",
            )
    if side is Side.CLOSE:
        for name in ("take_profits", "trailing_stop", "break_even_after"):
            if name in values:
                raise IntentRejected(ReasonCode.INVALID_FIELD, f"{name}: a CLOSE places no protection")
        if "close_pct" in values and "quantity" in values:
            raise IntentRejected(
                ReasonCode.INVALID_FIELD, "close_pct: send either quantity or close_pct on a CLOSE, not both"
            )
        return
    if "close_pct" in values:
        raise IntentRejected(ReasonCode.INVALID_FIELD, f"close_pct: only for CLOSE (this is {side.value})")
    if side is not Side.MODIFY:
        return
    for name in _NOT_FOR_MODIFY:
        if name in values:
            raise IntentRejected(
                ReasonCode.INVALID_FIELD, f"{name}: a MODIFY changes the protection of the open position only"
            )
    if not any(name in values for name in MODIFY_FIELDS):
        raise IntentRejected(
            ReasonCode.INVALID_FIELD, f"MODIFY: needs at least one of {', '.join(MODIFY_FIELDS)}"
        )
    if "stop_loss" in values and "stop_loss_pct" in values:
        raise IntentRejected(
            ReasonCode.INVALID_FIELD, "stop_loss_pct: send either stop_loss or stop_loss_pct"
        )
