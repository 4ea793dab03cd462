"""The governor's day figure, followed on the ledger's trade stream (:mod:`quantum_exec.risk.booked`),
equals the full read it replaces (``closed_trades(since=day start)``) after every write: trades
closed today, one revised after it closed (late funding), a record of yesterday's trade written
today, and across the UTC day's end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from redis import asyncio as aioredis

from quantum_exec.account.store import AccountStore
from quantum_exec.contracts.codec import dumps
from quantum_exec.core.settings import Settings
from quantum_exec.ledger.book import LedgerBook
from quantum_exec.ledger.query import TradeQuery
from quantum_exec.ledger.trades import Trade, trade_to_json, with_funding
from quantum_exec.risk.booked import ClosedToday

pytestmark = pytest.mark.integration

DAY1 = datetime(2026, 3, 9, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)


def _trade(n: int, net: str, closed: datetime) -> Trade:
    return Trade(
        trade_id=f"BTCUSDT-{n}",
        symbol="BTCUSDT",
        side="LONG",
        status="closed",
        max_quantity=Decimal("0.010"),
        closing_quantity=Decimal("0.010"),
        entry_price=Decimal("60000.10"),
        exit_price=Decimal("60100.20"),
        opened_at=closed - timedelta(minutes=5),
        closed_at=closed,
        duration_s=Decimal(300),
        exit_reason="take_profit",
        realized_pnl=Decimal(net) + Decimal("0.04800040"),
        commission=Decimal("0.04800040"),
        other_commissions={},
        funding=Decimal(0),
        net_pnl=Decimal(net),
        intent_ids=(f"i{n}",),
        model=None,
        strategy=None,
        events=2,
    )


async def test_the_followed_day_figure_equals_a_full_read_after_every_write(
    redis: aioredis.Redis, unique_names: dict[str, Any]
) -> None:
    settings = Settings(**unique_names)
    book = LedgerBook(redis, settings, AccountStore(redis, settings), is_leader=lambda: False)
    closed_today = ClosedToday(book)
    written_ms = int(DAY1.timestamp() * 1000) - 60_000

    async def write(trade: Trade, at: datetime) -> None:
        nonlocal written_ms
        # The stream id is the commit's time (as the ledger's own XADD '*' would stamp it).
        written_ms = max(written_ms + 1, int(at.timestamp() * 1000))
        await redis.xadd(book.trades_key, {"payload": dumps(trade_to_json(trade))}, id=f"{written_ms}-0")

    async def agree(start: datetime) -> Decimal:
        full = sum((t.net_pnl for t in await book.closed_trades(TradeQuery(since=start))), Decimal(0))
        followed = await closed_today.since(start)
        assert followed == full, (followed, full)
        return followed

    late_yesterday = _trade(0, "-3.10000000", DAY1 - timedelta(minutes=2))
    await write(late_yesterday, DAY1 - timedelta(minutes=1))  # before the day: not today's
    assert await agree(DAY1) == 0
    moment = DAY1 + timedelta(hours=1)
    nets = ["12.34567891", "-4.00000001", "0.5", "-7.25", "3.333"]
    for n, net in enumerate(nets, start=1):
        await write(_trade(n, net, moment), moment)
        await agree(DAY1)
        moment += timedelta(minutes=7)
    assert await agree(DAY1) == sum((Decimal(n) for n in nets), Decimal(0))
    # Funding the history listed after trade 2 closed: its record is written again, revised.
    await write(
        with_funding(_trade(2, "-4.00000001", DAY1 + timedelta(hours=1, minutes=7)), Decimal("-0.0123")),
        moment,
    )
    assert await agree(DAY1) == sum((Decimal(n) for n in nets), Decimal("-0.0123"))
    # Yesterday's trade revised today: written today, closed yesterday: still not today's figure.
    await write(with_funding(late_yesterday, Decimal("-1")), moment + timedelta(seconds=1))
    before = await agree(DAY1)
    assert before == sum((Decimal(n) for n in nets), Decimal("-0.0123"))
    # A record that no longer matches (a revision whose close moved before the day) drops out.
    await write(_trade(3, "0.5", DAY1 - timedelta(seconds=1)), moment + timedelta(seconds=2))
    assert await agree(DAY1) == before - Decimal("0.5")
    # Nothing written: the same figure from an empty read.
    assert await agree(DAY1) == before - Decimal("0.5")
    # The next UTC day: starts from nothing; yesterday's records stay out.
    assert await agree(DAY2) == 0
    for n, net in enumerate(["1.1", "-2.2"], start=10):
        await write(_trade(n, net, DAY2 + timedelta(minutes=n)), DAY2 + timedelta(minutes=n))
        await agree(DAY2)
    assert await agree(DAY2) == Decimal("-1.1")


async def test_a_long_day_is_read_in_pages_and_then_followed(
    redis: aioredis.Redis, unique_names: dict[str, Any]
) -> None:
    settings = Settings(**unique_names)
    book = LedgerBook(redis, settings, AccountStore(redis, settings), is_leader=lambda: False)
    closed_today = ClosedToday(book)
    base = int(DAY1.timestamp() * 1000) + 1000
    for n in range(1203):  # more than two pages of the stream
        trade = _trade(n, f"{(n % 17) - 8}.{n:04d}", DAY1 + timedelta(seconds=n + 1))
        await redis.xadd(book.trades_key, {"payload": dumps(trade_to_json(trade))}, id=f"{base + n}-0")
    full = sum((t.net_pnl for t in await book.closed_trades(TradeQuery(since=DAY1))), Decimal(0))
    assert await closed_today.since(DAY1) == full
    extra = _trade(5000, "100.0001", DAY1 + timedelta(hours=2))
    await redis.xadd(book.trades_key, {"payload": dumps(trade_to_json(extra))}, id=f"{base + 5000}-0")
    assert await closed_today.since(DAY1) == full + Decimal("100.0001")
