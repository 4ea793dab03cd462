"""Round trips from position events: a trade opens when a position leaves flat and closes when it
returns to flat; a flip closes one and opens the next.

Everything is summed from the events, which carry the exchange's own figures per fill
(``realized_pnl``, ``commission``), so a trade's money is what the exchange booked, exactly. Prices
are volume-weighted over the fills that opened/increased (entry) and reduced/closed (exit) it.

A flip's fill is split: ``abs(position before)`` closes the old trade (which gets the fill's whole
realized PnL: the new part realizes nothing) and the rest opens the new one at the fill price. Its
commission is split pro rata by quantity, the closing share rounded to the commission's own
decimals and the opening share the remainder, so the two add up to what was charged.

A funding payment belongs to the trade whose position was open at the settlement (:func:`covers`);
one the income history lists after that trade closed is booked on it afterwards (:func:`with_funding`).

:meth:`Ledger.apply` is idempotent by ``event_id`` and :meth:`Ledger.apply_funding` by the income
row's id, so a replay never counts twice; :meth:`Ledger.to_record` / :meth:`Ledger.from_record`
keep the open trades across restarts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any, Final

from quantum_exec.account.positions import PositionEvent, PositionKind, PositionReason

ZERO: Final = Decimal(0)
# Event and funding ids remembered for idempotency (far more than can be in flight at once).
MAX_APPLIED: Final = 10_000
# How many of them are stored with the open state (a commit writes them every batch).
PERSISTED_APPLIED: Final = 256
_EXIT_REASONS: Final = {PositionReason.ENTRY: "opposite_entry"}


@dataclass(frozen=True, slots=True)
class Trade:
    """One round trip, open or closed (see the module docstring for how each figure is made)."""

    trade_id: str
    symbol: str
    side: str  # LONG / SHORT
    status: str  # open / closed
    max_quantity: Decimal
    closing_quantity: Decimal
    entry_price: Decimal
    exit_price: Decimal | None
    opened_at: datetime
    closed_at: datetime | None
    duration_s: Decimal | None
    exit_reason: str | None
    realized_pnl: Decimal
    commission: Decimal
    other_commissions: dict[str, Decimal]
    funding: Decimal
    net_pnl: Decimal
    intent_ids: tuple[str, ...]
    model: str | None
    strategy: str | None
    events: int


@dataclass(slots=True)
class _Open:
    """The working state of a trade while it is open (and the fill it closed on)."""

    trade_id: str
    symbol: str
    long: bool
    opened_at: datetime
    model: str | None = None
    strategy: str | None = None
    quantity: Decimal = ZERO  # current size
    max_quantity: Decimal = ZERO
    entry_qty: Decimal = ZERO
    entry_notional: Decimal = ZERO
    exit_qty: Decimal = ZERO
    exit_notional: Decimal = ZERO
    realized: Decimal = ZERO
    commission: Decimal = ZERO
    other: dict[str, Decimal] = field(default_factory=dict)
    funding: Decimal = ZERO
    intent_ids: list[str] = field(default_factory=list)
    events: int = 0
    closed_at: datetime | None = None
    exit_reason: str | None = None

    def enter(self, quantity: Decimal, price: Decimal) -> None:
        self.entry_qty += quantity
        self.entry_notional += quantity * price
        self.quantity += quantity
        self.max_quantity = max(self.max_quantity, self.quantity)

    def exit(self, quantity: Decimal, price: Decimal) -> None:
        self.exit_qty += quantity
        self.exit_notional += quantity * price
        self.quantity -= quantity

    def charge(self, amount: Decimal, asset: str | None, quote_asset: str) -> None:
        if not amount:
            return
        if asset in (None, "", quote_asset):
            self.commission += amount
        else:
            self.other[asset] = self.other.get(asset, ZERO) + amount

    def note(self, event: PositionEvent) -> None:
        self.events += 1
        if event.intent_id and event.intent_id not in self.intent_ids:
            self.intent_ids.append(event.intent_id)

    def snapshot(self) -> Trade:
        closed = self.closed_at is not None
        return Trade(
            trade_id=self.trade_id,
            symbol=self.symbol,
            side="LONG" if self.long else "SHORT",
            status="closed" if closed else "open",
            max_quantity=self.max_quantity,
            closing_quantity=self.exit_qty,
            entry_price=self.entry_notional / self.entry_qty if self.entry_qty else ZERO,
            exit_price=self.exit_notional / self.exit_qty if self.exit_qty else None,
            opened_at=self.opened_at,
            closed_at=self.closed_at,
            duration_s=_seconds(self.closed_at - self.opened_at) if self.closed_at else None,
            exit_reason=self.exit_reason,
            realized_pnl=self.realized,
            commission=self.commission,
            other_commissions=dict(self.other),
            funding=self.funding,
            net_pnl=self.realized - self.commission + self.funding,
            intent_ids=tuple(self.intent_ids),
            model=self.model,
            strategy=self.strategy,
            events=self.events,
        )


def covers(trade: Trade | _Open, time: datetime) -> bool:
    """True when a funding settlement at ``time`` is the trade's: its position was open then. One
    at the instant it opened is not (the position did not exist yet); one at the instant it closed
    is (the rows of a settlement are booked before the fills of the same instant)."""
    return trade.opened_at < time and (trade.closed_at is None or time <= trade.closed_at)


def with_funding(trade: Trade, amount: Decimal) -> Trade:
    """``trade`` with a funding payment booked after it closed (a row the history listed late)."""
    return replace(trade, funding=trade.funding + amount, net_pnl=trade.net_pnl + amount)


def _seconds(delta: timedelta) -> Decimal:
    """Exact seconds of ``delta`` (``total_seconds`` goes through float)."""
    return Decimal(delta.days * 86_400 + delta.seconds) + Decimal(delta.microseconds) / Decimal(1_000_000)


def _split(commission: Decimal, part: Decimal, whole: Decimal) -> Decimal:
    """The share of ``commission`` for ``part`` of ``whole``, at the commission's own decimals."""
    if not commission or not whole:
        return ZERO
    exponent = min(int(commission.as_tuple().exponent), -8)
    return (commission * part / whole).quantize(Decimal(1).scaleb(int(exponent)))


class Ledger:
    """Open trades by symbol and the ids already applied; see the module docstring."""

    def __init__(self, quote_asset: str = "USDT") -> None:
        self.quote_asset = quote_asset
        self._open: dict[str, _Open] = {}
        self._applied: deque[str] = deque(maxlen=MAX_APPLIED)
        self._applied_set: set[str] = set()
        self.skipped = 0  # events that could not be attributed (a close with no trade known)

    def _remember(self, key: str) -> bool:
        """False when ``key`` was applied before; else remember it."""
        if key in self._applied_set:
            return False
        if len(self._applied) == self._applied.maxlen:
            self._applied_set.discard(self._applied[0])
        self._applied.append(key)
        self._applied_set.add(key)
        return True

    def open_trades(self) -> list[Trade]:
        return [self._open[s].snapshot() for s in sorted(self._open)]

    def apply(
        self, event: PositionEvent, *, model: str | None = None, strategy: str | None = None
    ) -> list[Trade]:
        """Fold one position event in; returns the trades it closed (usually none or one)."""
        if not self._remember(f"e:{event.event_id}"):
            return []
        if event.order_id == 0:
            # A reconciliation's report of a position we did not open (no fill behind it): it
            # describes the account, it moves no trade.
            return []
        after, qty, kind = event.position_amount, event.quantity, event.kind
        trade = self._open.get(event.symbol)
        closed: list[Trade] = []
        if kind is PositionKind.FLIPPED:
            closing = qty - abs(after)
            if trade is not None:
                trade.note(event)
                share = _split(event.commission, closing, qty)
                trade.exit(closing, event.price)
                trade.realized += event.realized_pnl
                trade.charge(share, event.commission_asset, self.quote_asset)
                closed.append(self._close(trade, event, "flip"))
                commission = event.commission - share
            else:
                self.skipped += 1
                commission = event.commission
            fresh = self._start(event, after, model, strategy)
            fresh.enter(abs(after), event.price)
            fresh.charge(commission, event.commission_asset, self.quote_asset)
            return closed
        if trade is not None:
            trade.note(event)
        else:
            if kind is PositionKind.CLOSED:
                self.skipped += 1  # nothing known of the position it closed: no side, no entry
                return []
            if kind is PositionKind.OPENED:
                trade = self._start(event, after, model, strategy)
            else:
                # The position predates what we saw: take it as opened at its current entry price.
                before = abs(after) - qty if kind is PositionKind.INCREASED else abs(after) + qty
                trade = self._start(event, after, None, None)
                trade.enter(before, event.entry_price)
        if kind in (PositionKind.OPENED, PositionKind.INCREASED):
            trade.enter(qty, event.price)
        else:
            trade.exit(qty, event.price)
            trade.realized += event.realized_pnl
        trade.charge(event.commission, event.commission_asset, self.quote_asset)
        if kind is PositionKind.CLOSED or after == 0:
            closed.append(self._close(trade, event, _EXIT_REASONS.get(event.reason, event.reason.value)))
        return closed

    def _start(self, event: PositionEvent, after: Decimal, model: str | None, strategy: str | None) -> _Open:
        trade = _Open(
            trade_id=event.event_id,
            symbol=event.symbol,
            long=after > 0,
            opened_at=event.time,
            model=model,
            strategy=strategy,
        )
        trade.note(event)
        self._open[event.symbol] = trade
        return trade

    def _close(self, trade: _Open, event: PositionEvent, reason: str) -> Trade:
        trade.closed_at = event.time
        trade.exit_reason = reason
        del self._open[trade.symbol]
        return trade.snapshot()

    def apply_funding(self, symbol: str, amount: Decimal, time: datetime, funding_id: str) -> bool:
        """Book a funding payment (signed, as the income row says) on the symbol's open trade if
        it was open at ``time`` (see :func:`covers`); False when it was not (nor booked before):
        the payment belongs to a closed trade, or to none of ours."""
        if not self._remember(f"f:{funding_id}"):
            return True
        trade = self._open.get(symbol)
        if trade is not None and covers(trade, time):
            trade.funding += amount
            return True
        return False

    # ---- persistence

    def to_record(self) -> dict[str, Any]:
        """The open trades and the most recent applied ids (the book's cursor is what makes a
        restart exact; these few ids only guard a replay around it), JSON-safe."""
        return {
            "quote_asset": self.quote_asset,
            "open": [_open_to_json(t) for t in self._open.values()],
            # The last PERSISTED_APPLIED, read from the right (not a copy of all MAX_APPLIED ids).
            "applied": list(islice(reversed(self._applied), PERSISTED_APPLIED))[::-1],
            "skipped": self.skipped,
        }

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Ledger:
        ledger = cls(str(data.get("quote_asset", "USDT")))
        for raw in data.get("open", []):
            trade = _open_from_json(raw)
            ledger._open[trade.symbol] = trade
        for key in data.get("applied", []):
            ledger._remember(str(key))
        ledger.skipped = int(data.get("skipped", 0))
        return ledger


# The open trade's field names, once (dataclasses.fields() per trade per save was measurable).
_OPEN_FIELDS: Final = tuple(f.name for f in fields(_Open))


def _open_to_json(trade: _Open) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _OPEN_FIELDS:
        value = getattr(trade, name)
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, dict):
            value = {k: str(v) for k, v in value.items()}
        out[name] = value
    return out


def _open_from_json(raw: dict[str, Any]) -> _Open:
    values: dict[str, Any] = {}
    for f in fields(_Open):
        value = raw.get(f.name)
        if value is None:
            values[f.name] = None if f.name in ("closed_at", "exit_reason", "model", "strategy") else ZERO
            continue
        if f.name in ("opened_at", "closed_at"):
            value = datetime.fromisoformat(value)
        elif f.name == "other":
            value = {k: Decimal(v) for k, v in value.items()}
        elif f.name == "intent_ids":
            value = list(value)
        elif f.name not in ("trade_id", "symbol", "long", "model", "strategy", "events", "exit_reason"):
            value = Decimal(value)
        values[f.name] = value
    return _Open(**values)


_DECIMALS: Final = (
    "max_quantity",
    "closing_quantity",
    "entry_price",
    "exit_price",
    "duration_s",
    "realized_pnl",
    "commission",
    "funding",
    "net_pnl",
)


def trade_to_json(trade: Trade) -> dict[str, Any]:
    """The API's shape: Decimals and datetimes as they are (``dumps`` writes them exactly)."""
    out = {f.name: getattr(trade, f.name) for f in fields(Trade)}
    out["intent_ids"] = list(trade.intent_ids)
    return out


def trade_from_json(data: dict[str, Any]) -> Trade:
    """Back from :func:`trade_to_json` after a JSON round trip (numbers read as Decimal or text)."""
    values = dict(data)
    for name in _DECIMALS:
        if values.get(name) is not None:
            values[name] = Decimal(str(values[name]))
    for name in ("opened_at", "closed_at"):
        if isinstance(values.get(name), str):
            values[name] = datetime.fromisoformat(values[name])
    values["other_commissions"] = {
        k: Decimal(str(v)) for k, v in (values.get("other_commissions") or {}).items()
    }
    values["intent_ids"] = tuple(values.get("intent_ids") or ())
    known: dict[str, Any] = {f.name: values.get(f.name) for f in fields(Trade)}
    return Trade(**known)
