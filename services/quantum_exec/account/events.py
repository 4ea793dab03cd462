"""User data stream events of Binance USD-M futures, parsed at the edge into frozen typed records.

Field letters follow Binance's "Event: Order Update", "Event: Balance and Position Update" and
"Event: Algo Order Update" pages (developers.binance.com/docs/derivatives/usds-margined-futures/
user-data-streams/...) and NautilusTrader's ``adapters/binance/futures/schemas/user.py``
(``BinanceFuturesOrderData``, ``BinanceFuturesAccountUpdateMsg``). Facts used here:

* ``n``/``N`` (commission) are not pushed when a fill pays none: absent means zero;
* ``E`` is the event time and ``T`` the matching-engine transaction time (the ALGO_UPDATE
  example labels them the other way round; we read ``E`` as event time everywhere);
* ``listenKeyExpired`` has been seen with ``E`` as a string;
* ``TRADE_LITE`` repeats a fill without commission or realized profit, so it is ignored here:
  ORDER_TRADE_UPDATE carries the same fill with everything we need.

:func:`parse_event` returns ``None`` for event types the service does not use and raises
:class:`EventError`, naming the field, for a known event that is malformed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Final, TypeVar

from quantum_exec.core.errors import QuantumError
from quantum_exec.exchange.wire import AlgoStatus, OrderSide, OrderStatus

ZERO: Final = Decimal(0)

_E = TypeVar("_E", bound=StrEnum)


class EventError(QuantumError):
    """A user data stream event of a known type with a missing or malformed field."""

    def __init__(self, event_type: str, field: str, problem: str) -> None:
        super().__init__(f"{event_type} {field}: {problem}")
        self.event_type = event_type
        self.field = field


class PositionSide(StrEnum):
    BOTH = "BOTH"
    LONG = "LONG"
    SHORT = "SHORT"


class ExecutionType(StrEnum):
    """``x`` of ORDER_TRADE_UPDATE: what just happened to the order (TRADE is a fill)."""

    NEW = "NEW"
    CANCELED = "CANCELED"
    CALCULATED = "CALCULATED"  # liquidation execution
    EXPIRED = "EXPIRED"
    TRADE = "TRADE"
    AMENDMENT = "AMENDMENT"


# Each StrEnum's members by value (what ``kind(value)`` looks up, without the enum call's cost).
_MEMBERS: dict[type[StrEnum], dict[str, StrEnum]] = {}


class _Fields:
    """A JSON object read field by field; every failure names the event and the field path."""

    __slots__ = ("_event", "_path", "_raw")

    def __init__(self, raw: Any, event: str, path: str = "") -> None:
        if not isinstance(raw, dict):
            raise EventError(event, path or "event", f"must be an object (got {type(raw).__name__})")
        self._raw: dict[str, Any] = raw
        self._event = event
        self._path = path

    def _name(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def _fail(self, key: str, problem: str) -> EventError:
        return EventError(self._event, self._name(key), problem)

    def _get(self, key: str, required: bool) -> Any:
        value = self._raw.get(key)
        if value is None and required:
            raise self._fail(key, "missing")
        return value

    # Each reader takes the common shape first (a non-empty string, an int) with one type check,
    # and leaves the rest to the full checks: the same values and the same errors, less work per
    # field (the user stream parses a few dozen fields per event, several events per intent).

    def text(self, key: str, *, required: bool = True) -> str:
        value = self._raw.get(key)
        if type(value) is str:
            return value
        if value is None and required:
            raise self._fail(key, "missing")
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self._fail(key, f"must be a string (got {value!r})")
        return value

    def ident(self, key: str) -> str:
        """An id Binance sends as a string or a number; empty when absent."""
        value = self._raw.get(key)
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self._fail(key, f"not an id: {value!r}")
        return str(value)

    def decimal(self, key: str, *, required: bool = True) -> Decimal:
        value = self._raw.get(key)
        if type(value) is str and value:
            try:
                number = Decimal(value)
            except (InvalidOperation, ValueError):
                raise self._fail(key, f"not a number: {value!r}") from None
            if number.is_finite():
                return number
            raise self._fail(key, f"not a finite number: {value!r}")
        if value is None and required:
            raise self._fail(key, "missing")
        if value is None or value == "":
            return ZERO
        if isinstance(value, float):
            value = repr(value)  # the shortest repr is the text the exchange sent
        if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
            raise self._fail(key, f"not a number: {value!r}")
        try:
            number = Decimal(value)
        except (InvalidOperation, ValueError):
            raise self._fail(key, f"not a number: {value!r}") from None
        if not number.is_finite():
            raise self._fail(key, f"not a finite number: {value!r}")
        return number

    def integer(self, key: str, *, required: bool = True) -> int:
        value = self._raw.get(key)
        if type(value) is int:
            return value
        if value is None and required:
            raise self._fail(key, "missing")
        if value is None or (value == "" and not required):
            return 0
        if isinstance(value, bool):
            raise self._fail(key, f"not an integer: {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise self._fail(key, f"not an integer: {value!r}") from None

    def flag(self, key: str) -> bool:
        value = self._raw.get(key)
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return bool(value == "true")
        raise self._fail(key, f"not a boolean: {value!r}")

    def choice(self, key: str, kind: type[_E], default: str | None = None) -> _E:
        value = self.text(key, required=default is None) or (default or "")
        members = _MEMBERS.get(kind)
        if members is None:
            members = _MEMBERS[kind] = {member.value: member for member in kind}
        member = members.get(value)
        if member is None:
            raise self._fail(key, f"unknown value {value!r}")
        return member  # type: ignore[return-value]  # a member of ``kind``, by construction

    def child(self, key: str) -> _Fields:
        return _Fields(self._get(key, True), self._event, self._name(key))

    def children(self, key: str) -> list[_Fields]:
        value = self._raw.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._fail(key, f"must be an array (got {type(value).__name__})")
        return [_Fields(item, self._event, f"{self._name(key)}[{i}]") for i, item in enumerate(value)]


_FILL_EXECUTIONS: Final = frozenset({ExecutionType.TRADE, ExecutionType.CALCULATED})


@dataclass(frozen=True, slots=True)
class OrderTradeUpdate:
    """ORDER_TRADE_UPDATE: one change of a regular order; ``execution_type`` TRADE is one fill.

    ``last_qty``/``last_price``/``commission``/``realized_profit`` belong to this fill alone;
    ``cum_qty``/``avg_price`` to the order so far. Liquidation orders have client ids starting
    ``autoclose-``, ADL orders ``adl_autoclose`` (Binance's Order Update page; Nautilus notes the same).
    """

    event_time_ms: int
    transaction_time_ms: int
    symbol: str
    client_order_id: str
    side: OrderSide
    order_type: str
    original_type: str
    execution_type: ExecutionType
    status: OrderStatus
    order_id: int
    orig_qty: Decimal
    price: Decimal
    avg_price: Decimal
    stop_price: Decimal
    last_qty: Decimal
    cum_qty: Decimal
    last_price: Decimal
    commission: Decimal
    commission_asset: str
    realized_profit: Decimal
    trade_id: int
    trade_time_ms: int
    maker: bool
    reduce_only: bool
    close_position: bool
    position_side: PositionSide

    @property
    def is_fill(self) -> bool:
        """True for an event that moved the position: a TRADE, or the CALCULATED fill of a
        liquidation or ADL order ("Liquidation Execution", Binance's Order Update page), with a
        positive quantity."""
        return self.execution_type in _FILL_EXECUTIONS and self.last_qty > 0

    @property
    def signed_last_qty(self) -> Decimal:
        """This fill's effect on a one-way position: positive for BUY, negative for SELL."""
        return self.last_qty if self.side is OrderSide.BUY else -self.last_qty

    @classmethod
    def parse(cls, raw: _Fields) -> OrderTradeUpdate:
        o = raw.child("o")
        return cls(
            event_time_ms=raw.integer("E"),
            transaction_time_ms=raw.integer("T", required=False),
            symbol=o.text("s"),
            client_order_id=o.text("c"),
            side=o.choice("S", OrderSide),
            order_type=o.text("o"),
            original_type=o.text("ot", required=False),
            execution_type=o.choice("x", ExecutionType),
            status=o.choice("X", OrderStatus),
            order_id=o.integer("i"),
            orig_qty=o.decimal("q", required=False),
            price=o.decimal("p", required=False),
            avg_price=o.decimal("ap", required=False),
            stop_price=o.decimal("sp", required=False),
            last_qty=o.decimal("l"),
            cum_qty=o.decimal("z"),
            last_price=o.decimal("L"),
            commission=o.decimal("n", required=False),
            commission_asset=o.text("N", required=False),
            realized_profit=o.decimal("rp", required=False),
            trade_id=o.integer("t", required=False),
            trade_time_ms=o.integer("T", required=False),
            maker=o.flag("m"),
            reduce_only=o.flag("R"),
            close_position=o.flag("cp"),
            position_side=o.choice("ps", PositionSide, "BOTH"),
        )


@dataclass(frozen=True, slots=True)
class BalanceUpdate:
    """One asset of ACCOUNT_UPDATE ``a.B``."""

    asset: str
    wallet_balance: Decimal
    cross_wallet_balance: Decimal
    balance_change: Decimal


@dataclass(frozen=True, slots=True)
class PositionUpdate:
    """One position of ACCOUNT_UPDATE ``a.P``; ``amount`` is signed (short < 0)."""

    symbol: str
    amount: Decimal
    entry_price: Decimal
    unrealized_pnl: Decimal
    margin_type: str  # CROSSED or ISOLATED, as wire.Position spells it
    isolated_wallet: Decimal
    position_side: PositionSide


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    """ACCOUNT_UPDATE: balances and the positions that changed (``reason`` ORDER, FUNDING_FEE, ...)."""

    event_time_ms: int
    transaction_time_ms: int
    reason: str
    balances: tuple[BalanceUpdate, ...]
    positions: tuple[PositionUpdate, ...]

    @classmethod
    def parse(cls, raw: _Fields) -> AccountUpdate:
        a = raw.child("a")
        return cls(
            event_time_ms=raw.integer("E"),
            transaction_time_ms=raw.integer("T", required=False),
            reason=a.text("m"),
            balances=tuple(
                BalanceUpdate(
                    asset=b.text("a"),
                    wallet_balance=b.decimal("wb"),
                    cross_wallet_balance=b.decimal("cw", required=False),
                    balance_change=b.decimal("bc", required=False),
                )
                for b in a.children("B")
            ),
            positions=tuple(
                PositionUpdate(
                    symbol=p.text("s"),
                    amount=p.decimal("pa"),
                    entry_price=p.decimal("ep"),
                    unrealized_pnl=p.decimal("up", required=False),
                    margin_type="ISOLATED"
                    if p.text("mt", required=False).lower() == "isolated"
                    else "CROSSED",
                    isolated_wallet=p.decimal("iw", required=False),
                    position_side=p.choice("ps", PositionSide),
                )
                for p in a.children("P")
            ),
        )


@dataclass(frozen=True, slots=True)
class AlgoUpdate:
    """ALGO_UPDATE: a conditional order of the Algo Service changed state.

    ``actual_order_id`` (``ai``) is the matching-engine order id once triggered (empty before);
    ``executed_qty``/``avg_price`` (``aq``/``ap``) that order's fill; ``reject_reason`` (``rm``)
    why it failed, e.g. "Reduce Only reject".
    """

    event_time_ms: int
    transaction_time_ms: int
    client_algo_id: str
    algo_id: int
    algo_type: str
    order_type: str
    symbol: str
    side: OrderSide
    position_side: PositionSide
    quantity: Decimal
    status: AlgoStatus
    actual_order_id: str
    avg_price: Decimal
    executed_qty: Decimal
    trigger_price: Decimal
    close_position: bool
    reduce_only: bool
    reject_reason: str
    activated: bool | None = None  # ``ia`` of a trailing stop (since 2026-08-21); None: not said

    @classmethod
    def parse(cls, raw: _Fields) -> AlgoUpdate:
        o = raw.child("o")
        return cls(
            event_time_ms=raw.integer("E"),
            transaction_time_ms=raw.integer("T", required=False),
            client_algo_id=o.text("caid"),
            algo_id=o.integer("aid"),
            algo_type=o.text("at", required=False),
            order_type=o.text("o"),
            symbol=o.text("s"),
            side=o.choice("S", OrderSide),
            position_side=o.choice("ps", PositionSide, "BOTH"),
            quantity=o.decimal("q", required=False),
            status=o.choice("X", AlgoStatus),
            actual_order_id=o.ident("ai"),
            avg_price=o.decimal("ap", required=False),
            executed_qty=o.decimal("aq", required=False),
            trigger_price=o.decimal("tp", required=False),
            close_position=o.flag("cp"),
            reduce_only=o.flag("R"),
            reject_reason=o.text("rm", required=False),
            activated=o.flag("ia") if "ia" in o._raw else None,
        )


@dataclass(frozen=True, slots=True)
class ListenKeyExpired:
    """listenKeyExpired: the stream is dead; create a key, reconnect, and resync by REST."""

    event_time_ms: int
    listen_key: str

    @classmethod
    def parse(cls, raw: _Fields) -> ListenKeyExpired:
        return cls(event_time_ms=raw.integer("E"), listen_key=raw.text("listenKey", required=False))


UserEvent = OrderTradeUpdate | AccountUpdate | AlgoUpdate | ListenKeyExpired

_PARSERS: Final[dict[str, Callable[[_Fields], UserEvent]]] = {
    "ORDER_TRADE_UPDATE": OrderTradeUpdate.parse,
    "ACCOUNT_UPDATE": AccountUpdate.parse,
    "ALGO_UPDATE": AlgoUpdate.parse,
    "listenKeyExpired": ListenKeyExpired.parse,
}


# The event types the service reads: the user-stream subscription's ``events=`` allow-list (an
# event type left out of it is never delivered).
HANDLED_EVENTS: Final = tuple(_PARSERS)


def parse_event(raw: dict[str, Any]) -> UserEvent | None:
    """The typed event of one user data stream message, or ``None`` for a type we do not use.

    Accepts the bare event and the combined-stream wrapper ``{"stream": ..., "data": {...}}``.
    Raises :class:`EventError` naming the field when a known event is malformed.
    """
    if not isinstance(raw, dict):
        raise EventError("event", "event", f"must be an object (got {type(raw).__name__})")
    if "e" not in raw and isinstance(raw.get("data"), dict):
        raw = raw["data"]
    event_type = raw.get("e")
    if not isinstance(event_type, str):
        return None
    parser = _PARSERS.get(event_type)
    if parser is None:
        return None
    return parser(_Fields(raw, event_type))
