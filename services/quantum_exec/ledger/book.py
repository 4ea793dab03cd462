"""The trade ledger in Redis: round trips built from the position events, exactly once.

The holder of the account lease tails the position-event stream from a cursor and folds each
event into a :class:`~quantum_exec.ledger.trades.Ledger`. The trades an event closes, the open
trades' state and the cursor are written in one script that first checks the account lease, so a
restart or a takeover resumes at the first event not yet applied: nothing is counted twice and
nothing is skipped. Closed trades live in a stream (``<prefix>:ledger:trades``) trimmed to
``QUANTUM_LEDGER_RETENTION_DAYS``; the open ones in ``<prefix>:ledger:state``.

Funding is booked from ``GET /fapi/v1/income`` (FUNDING_FEE rows, idempotent by ``tranId``)
whenever the user stream has shown a FUNDING_FEE account update since the last fetch, before the
next position event is applied, so a trade closed after a funding settlement carries it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import orjson
from redis.asyncio import Redis

from quantum_exec.account.positions import PositionEvent, PositionKind
from quantum_exec.account.store import AccountStore
from quantum_exec.aio import cancel_task
from quantum_exec.contracts.codec import dumps, payload_value
from quantum_exec.exchange.wire import Income
from quantum_exec.ledger.query import TradeQuery
from quantum_exec.ledger.trades import Ledger, Trade, trade_from_json, trade_to_json
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.settings import Settings
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

FundingSource = Callable[[int], Awaitable[list[Income]]]


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
        self._is_leader = is_leader
        self._funding_seen_ms = funding_seen_ms
        self._funding = funding
        self._quote_asset = quote_asset
        self._position_stream = settings.position_stream
        self._retention_ms = settings.ledger_retention_days * _DAY_MS
        self.state_key = f"{prefix}:ledger:state"
        self.trades_key = f"{prefix}:ledger:trades"
        self._commit = redis.register_script(_COMMIT)
        self._ledger: Ledger | None = None  # loaded while leading
        self._cursor = "0-0"
        self._funding_fetched_ms = 0
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
        high = "+"
        low = "-" if query.since is None else str(_ms(query.since))
        found: list[Trade] = []
        while True:
            rows: Any = await self._redis.xrevrange(self.trades_key, max=high, min=low, count=500)
            for _stream_id, fields in rows:
                trade = trade_from_json(json.loads(payload_value(fields) or b"{}", parse_float=Decimal))
                if query.matches(trade):
                    found.append(trade)
                    if limit is not None and len(found) >= limit:
                        return found
            if len(rows) < 500:
                return found
            last = rows[-1][0]
            high = "(" + (last.decode() if isinstance(last, bytes) else str(last))

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
            except asyncio.CancelledError:
                raise
            except REDIS_DOWN as exc:
                log.warning("ledger.redis_down", error=str(exc))
                self._ledger = None
                await asyncio.sleep(_IDLE_S)
            except Exception:
                log.exception("ledger.failed")
                self._ledger = None
                await asyncio.sleep(1.0)

    async def _load(self) -> None:
        raw = await self._redis.get(self.state_key)
        if raw is None:
            self._ledger, self._cursor, self._funding_fetched_ms = Ledger(self._quote_asset), "0-0", 0
            self._carry = []
        else:
            state = orjson.loads(raw)
            self._ledger = Ledger.from_record(state["ledger"])
            self._cursor = str(state["cursor"])
            self._funding_fetched_ms = int(state.get("funding_fetched_ms", 0))
            self._carry = [Income.parse(r) for r in state.get("funding_carry", [])]
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
        funding = await self._funding_rows()
        if not reply and funding is None:
            return
        # Rows are applied in time order between the events; those later than every event read so
        # far wait for the next batch (the fill before them may not be published yet).
        pending = sorted([*self._carry, *(funding or [])], key=lambda r: r.time_ms)
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
            # Funding settled before this fill belongs to the trade open at the time.
            while pending and _time(pending[0].time_ms) <= event.time:
                row = pending.pop(0)
                ledger.apply_funding(row.symbol, row.income, _time(row.time_ms), row.tran_id)
            labels: dict[str, str] = {}
            if event.kind in _OPENING and event.intent_id:
                labels = labels_of.get(event.intent_id, {})
            closed.extend(ledger.apply(event, model=labels.get("model"), strategy=labels.get("strategy")))
        self._carry = pending
        await self._save(ledger, cursor, closed)

    async def _funding_rows(self) -> list[Income] | None:
        """FUNDING_FEE rows settled since the last fetch, when the stream showed one (else None)."""
        seen = self._funding_seen_ms()
        if self._funding is None or seen <= self._funding_fetched_ms:
            return None
        start = self._funding_fetched_ms + 1 if self._funding_fetched_ms else seen - _DAY_MS
        rows = await self._funding(start)
        self._funding_fetched_ms = max([seen, *(r.time_ms for r in rows)])
        return rows

    async def _save(self, ledger: Ledger, cursor: str, closed: list[Trade]) -> None:
        state = orjson.dumps(
            {
                "ledger": ledger.to_record(),
                "cursor": cursor,
                "funding_fetched_ms": self._funding_fetched_ms,
                # Funding rows later than every event read: kept for the next batch across restarts.
                "funding_carry": [_income_json(r) for r in self._carry],
            }
        )
        minid = str(int(time.time() * 1000) - self._retention_ms)
        payloads = [dumps(trade_to_json(t)) for t in closed]
        outcome = await self._commit(
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
        self.applied.set()


def _event_of(fields: Any) -> PositionEvent | None:
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
