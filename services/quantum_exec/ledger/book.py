"""The trade ledger in Redis: round trips built from the position events, exactly once.

The holder of the account lease tails the position-event stream from a cursor and folds each
event into a :class:`~quantum_exec.ledger.trades.Ledger`. The trades an event closes, the open
trades' state and the cursor are written in one script that first checks the account lease, so a
restart or a takeover resumes at the first event not yet applied: nothing is counted twice and
nothing is skipped. Closed trades live in a stream (``<prefix>:ledger:trades``) trimmed to
``QUANTUM_LEDGER_RETENTION_DAYS``; the open ones in ``<prefix>:ledger:state``.

Funding is booked from ``GET /fapi/v1/income`` (FUNDING_FEE rows) once the user stream has shown a
FUNDING_FEE account update; :class:`~quantum_exec.ledger.funding.FundingReader` asks until the
history lists the settlement (it is eventually consistent) and hands each row over once. A row is
applied in time order between the position events, so it lands on the trade open at the
settlement. The history may list it only after that trade closed: then the trade is written to the
stream again with the funding added, and readers take the newest record of each trade.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import orjson
from redis.asyncio import Redis

from quantum_exec.account.positions import PositionEvent, PositionKind
from quantum_exec.account.protection_events import PROTECTION_EVENT_TYPE
from quantum_exec.account.store import AccountStore
from quantum_exec.contracts.codec import dumps, payload_value
from quantum_exec.core.aio import cancel_task
from quantum_exec.core.scripts import run_script
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.wire import Income
from quantum_exec.ledger.funding import SETTLEMENT_SLACK_MS, FundingReader, FundingSource
from quantum_exec.ledger.query import TradeQuery
from quantum_exec.ledger.trades import Ledger, Trade, covers, trade_from_json, trade_to_json, with_funding
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.ops.outage import OutageLog
from quantum_exec.stream.link import REDIS_DOWN

log = get_logger(__name__)

_BATCH: Final = 500
# The events that open a trade (the producer's model/strategy labels are looked up for them).
_OPENING: Final = frozenset({PositionKind.OPENED, PositionKind.FLIPPED})
# After a read that found events, wait this long for more before committing: the open state is
# written once per batch, and the ledger is for people, not the order path.
_GATHER_S: Final = 0.05
_IDLE_S: Final = 0.2
_DAY_MS: Final = 86_400_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

# KEYS: account lease, state, trades stream. ARGV: held lease value, state json, minid,
# closed-trade payloads... Returns 1, or -1 when the lease is not ours (nothing written).
_COMMIT: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
for i = 4, #ARGV do
  redis.call('XADD', KEYS[3], 'MINID', '~', ARGV[3], '*', 'payload', ARGV[i])
end
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""


class LedgerBook:
    """Builds the ledger (as lease holder) and answers the API's questions (any instance)."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        store: AccountStore,
        *,
        is_leader: Callable[[], bool],
        funding_seen_ms: Callable[[], int] = lambda: 0,
        funding: FundingSource | None = None,
        quote_asset: str = "USDT",
    ) -> None:
        prefix = settings.key_prefix
        self._redis = redis
        self._store = store
        self._outage = OutageLog(log, "ledger.redis_down")
        self._is_leader = is_leader
        self._funding_seen_ms = funding_seen_ms
        self._reader = None if funding is None else FundingReader(funding)
        self._quote_asset = quote_asset
        self._position_stream = settings.position_stream
        self._retention_ms = settings.ledger_retention_days * _DAY_MS
        self.state_key = f"{prefix}:ledger:state"
        self.trades_key = f"{prefix}:ledger:trades"
        self._commit = redis.register_script(_COMMIT)
        self._ledger: Ledger | None = None  # loaded while leading
        self._cursor = "0-0"
        self._last_event: datetime | None = None  # the latest event time applied
        self._gathered = False
        self._carry: list[Income] = []
        self._task: asyncio.Task[None] | None = None
        self.applied = asyncio.Event()  # set after each commit (tests wait on it)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ledger")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_task(task)

    # ---- reading (any instance)

    async def closed_trades(self, query: TradeQuery, *, limit: int | None = None) -> list[Trade]:
        """Closed trades matching ``query``, newest first (at most ``limit``)."""
        # Entries are stamped when committed, never before the trade closed: ``since`` bounds the
        # read, ``until`` cannot (a rebuild commits old trades late) and is only filtered.
        found: list[Trade] = []
        async for trade in self._written_since("-" if query.since is None else str(_ms(query.since))):
            if query.matches(trade):
                found.append(trade)
                if limit is not None and len(found) >= limit:
                    break
        return found

    async def _written_since(self, low: str) -> AsyncIterator[Trade]:
        """The newest record of each trade written at or after stream id ``low``, newest first."""
        high = "+"
        seen: set[str] = set()
        while True:
            rows: Any = await self._redis.xrevrange(self.trades_key, max=high, min=low, count=500)
            for _stream_id, fields in rows:
                trade = self._trade_at(fields)
                if trade.trade_id not in seen:  # an older record of a trade revised since
                    seen.add(trade.trade_id)
                    yield trade
            if len(rows) < 500:
                return
            last = rows[-1][0]
            high = "(" + (last.decode() if isinstance(last, bytes) else str(last))

    @staticmethod
    def _trade_at(fields: Any) -> Trade:
        """The trade of one stream entry, parsed exactly (Decimal from the JSON number's text:
        orjson would read the numbers as floats). The risk governor follows the stream
        (:meth:`trades_written`), so no entry is parsed again every tick."""
        return trade_from_json(json.loads(payload_value(fields) or b"{}", parse_float=Decimal))

    async def trades_written(self, low: str) -> tuple[list[Trade], str | None]:
        """Every trade record written at or after stream id ``low`` (``(<id>``: after it), oldest
        first, revisions included, and the id of the last one (None: none): for a reader that
        follows the stream (the risk governor's day figure) instead of reading it again."""
        found: list[Trade] = []
        last: str | None = None
        while True:
            rows: Any = await self._redis.xrange(self.trades_key, min=low, max="+", count=500)
            for stream_id, fields in rows:
                found.append(self._trade_at(fields))
                last = stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)
            if len(rows) < 500 or last is None:
                return found, last
            low = "(" + last

    async def open_trades(self) -> list[Trade]:
        """The round trips still open, as last committed."""
        raw = await self._redis.get(self.state_key)
        if raw is None:
            return []
        return Ledger.from_record(orjson.loads(raw)["ledger"]).open_trades()

    # ---- building (the lease holder)

    async def _run(self) -> None:
        while True:
            try:
                if not self._is_leader():
                    self._ledger = None  # reload on the next lead: another instance moved it on
                    await asyncio.sleep(_IDLE_S)
                    continue
                if self._ledger is None:
                    await self._load()
                await self._step()
                self._outage.ok()
            except asyncio.CancelledError:
                raise
            except REDIS_DOWN as exc:
                self._outage.failed(error=str(exc))
                self._ledger = None
                await asyncio.sleep(_IDLE_S)
            except Exception:
                log.exception("ledger.failed")
                self._ledger = None
                await asyncio.sleep(1.0)

    async def _load(self) -> None:
        raw = await self._redis.get(self.state_key)
        state: dict[str, Any] = {} if raw is None else orjson.loads(raw)
        self._ledger = Ledger.from_record(state["ledger"]) if state else Ledger(self._quote_asset)
        self._cursor = str(state.get("cursor", "0-0"))
        self._carry = [Income.parse(r) for r in state.get("funding_carry", [])]
        last = state.get("last_event")
        self._last_event = None if last is None else datetime.fromisoformat(last)
        if self._reader is not None:
            legacy = {"fetched_ms": state["funding_fetched_ms"]} if "funding_fetched_ms" in state else None
            self._reader.load(state.get("funding", legacy))
        await self._publish_totals()
        log.info("ledger.loaded", cursor=self._cursor, open=len(self._ledger.open_trades()))

    async def _publish_totals(self) -> None:
        """Set the PnL gauges from every retained closed trade (once per lead; then per close)."""
        realized: dict[str, Decimal] = {}
        net: dict[str, Decimal] = {}
        for trade in await self.closed_trades(TradeQuery()):
            realized[trade.symbol] = realized.get(trade.symbol, Decimal(0)) + trade.realized_pnl
            net[trade.symbol] = net.get(trade.symbol, Decimal(0)) + trade.net_pnl
        for symbol in realized:
            metrics.LEDGER_REALIZED_PNL.labels(symbol=symbol).set(float(realized[symbol]))
            metrics.LEDGER_NET_PNL.labels(symbol=symbol).set(float(net[symbol]))

    async def _step(self) -> None:
        ledger = self._ledger
        assert ledger is not None
        if self._gathered:
            await asyncio.sleep(_GATHER_S)
        reply: Any = await self._redis.xread(
            {self._position_stream: self._cursor}, count=_BATCH, block=int(_IDLE_S * 1000)
        )
        self._gathered = bool(reply)
        seen = self._funding_seen_ms()
        fresh = None if self._reader is None else await self._reader.new_rows(seen)
        if not reply and fresh is None:
            return
        # Rows are applied in time order between the events; those later than every event applied
        # so far wait for a later batch (the fill before them may not be published yet).
        pending = sorted([*self._carry, *(fresh or [])], key=lambda r: r.time_ms)
        unbooked: list[Income] = []  # covered by no open trade: a closed one's, or none of ours

        def book_until(moment: datetime | None) -> None:
            while pending and moment is not None and _time(pending[0].time_ms) <= moment:
                row = pending.pop(0)
                if not ledger.apply_funding(row.symbol, row.income, _time(row.time_ms), row.tran_id):
                    unbooked.append(row)

        book_until(self._last_event)  # listed late: every fill before them is applied
        closed: list[Trade] = []
        cursor = self._cursor
        events: list[PositionEvent] = []
        for _stream, entries in reply or []:
            for stream_id, fields in entries:
                cursor = stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)
                event = _event_of(fields)
                if event is not None:
                    events.append(event)
        # The producers' labels of the trades the batch opens, in one round trip (not one per event).
        opening = [e.intent_id for e in events if e.kind in _OPENING and e.intent_id]
        labels_of = await self._store.labels_many(opening) if opening else {}
        for event in events:
            book_until(event.time)  # funding settled before this fill: the trade open at the time
            labels: dict[str, str] = {}
            if event.kind in _OPENING and event.intent_id:
                labels = labels_of.get(event.intent_id, {})
            closed.extend(ledger.apply(event, model=labels.get("model"), strategy=labels.get("strategy")))
            self._last_event = max(event.time, self._last_event or event.time)
        self._carry = pending
        await self._save(ledger, cursor, closed, await self._book_on_closed(unbooked))

    async def _book_on_closed(self, rows: list[Income]) -> list[tuple[Trade, Decimal]]:
        """Book the funding rows no open trade covered on the closed trades that cover them (the
        history listed them after the trade closed); each revised trade with what it gained. A row
        no trade covers (a position not ours) is left."""
        if not rows:
            return []
        revised: dict[str, tuple[Trade, Decimal]] = {}
        left = list(rows)
        # A trade is written once closed, so after the settlement it covers (the slack: clocks).
        low = str(max(0, min(r.time_ms for r in rows) - SETTLEMENT_SLACK_MS))
        async for trade in self._written_since(low):
            for row in [r for r in left if r.symbol == trade.symbol and covers(trade, _time(r.time_ms))]:
                left.remove(row)
                before, gained = revised.get(trade.trade_id, (trade, Decimal(0)))
                revised[trade.trade_id] = (with_funding(before, row.income), gained + row.income)
            if not left:
                break
        for row in left:
            log.info("ledger.funding_not_ours", symbol=row.symbol, tran_id=row.tran_id, time_ms=row.time_ms)
        return list(revised.values())

    async def _save(
        self, ledger: Ledger, cursor: str, closed: list[Trade], revised: list[tuple[Trade, Decimal]]
    ) -> None:
        state = orjson.dumps(
            {
                "ledger": ledger.to_record(),
                "cursor": cursor,
                "last_event": None if self._last_event is None else self._last_event.isoformat(),
                "funding": None if self._reader is None else self._reader.to_record(),
                # Funding rows later than every event read: kept for the next batch across restarts.
                "funding_carry": [_income_json(r) for r in self._carry],
            }
        )
        minid = str(int(time.time() * 1000) - self._retention_ms)
        payloads = [dumps(trade_to_json(t)) for t in [*closed, *(trade for trade, _ in revised)]]
        outcome = await run_script(
            self._commit,
            keys=[self._store.lease_key, self.state_key, self.trades_key],
            args=[self._store.held_value, state, minid, *payloads],
        )
        if int(outcome) != 1:
            log.warning("ledger.lease_lost", detail="not committed; the new holder resumes from the cursor")
            self._ledger = None
            return
        self._cursor = cursor
        for trade in closed:
            labels = {"symbol": trade.symbol}
            # Gauges: PnL goes down as well as up (a counter cannot).
            metrics.LEDGER_REALIZED_PNL.labels(**labels).inc(float(trade.realized_pnl))
            metrics.LEDGER_NET_PNL.labels(**labels).inc(float(trade.net_pnl))
            outcome = "win" if trade.net_pnl > 0 else "loss" if trade.net_pnl < 0 else "even"
            metrics.LEDGER_TRADES.labels(exit_reason=trade.exit_reason or "unknown", outcome=outcome).inc()
            log.info(
                "ledger.trade_closed",
                trade_id=trade.trade_id,
                symbol=trade.symbol,
                side=trade.side,
                exit_reason=trade.exit_reason,
                net_pnl=str(trade.net_pnl),
            )
        for trade, gained in revised:
            metrics.LEDGER_NET_PNL.labels(symbol=trade.symbol).inc(float(gained))
            log.info(
                "ledger.funding_after_close",
                trade_id=trade.trade_id,
                symbol=trade.symbol,
                funding=str(gained),
                net_pnl=str(trade.net_pnl),
            )
        self.applied.set()


def _event_of(fields: Any) -> PositionEvent | None:
    kind = fields.get(b"event_type", fields.get("event_type"))
    if kind in (PROTECTION_EVENT_TYPE, PROTECTION_EVENT_TYPE.encode()):
        return None  # a protection change, not a fill: nothing to book
    raw = payload_value(fields)
    if raw is None:
        return None
    try:
        return PositionEvent.model_validate(json.loads(raw, parse_float=Decimal))
    except ValueError as exc:
        log.error("ledger.bad_event", error=str(exc)[:200])
        return None


def _income_json(row: Income) -> dict[str, Any]:
    """An income row as ``GET /fapi/v1/income`` writes it (``Income.parse`` reads it back)."""
    return {
        "tranId": row.tran_id,
        "symbol": row.symbol,
        "incomeType": row.income_type,
        "income": str(row.income),
        "asset": row.asset,
        "time": row.time_ms,
    }


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _time(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)  # exact, never through float
