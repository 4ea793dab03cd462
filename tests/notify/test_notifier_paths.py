"""The notifier's less travelled paths, in-process against the local chat APIs: a message whose
answer was lost is sent again marked, the user data stream down then back, the daily summary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from redis import asyncio as aioredis

from quantum_exec.contracts import dumps
from quantum_exec.core.settings import Settings
from quantum_exec.ledger.trades import Trade, trade_to_json
from quantum_exec.notify.config import notify_config
from quantum_exec.notify.sidecar import NoticeSidecar
from support.chat_apis import ChatApis
from support.waiting import happens_within, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
async def apis() -> AsyncIterator[ChatApis]:
    server = ChatApis("unused-token")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _config(apis: ChatApis, **extra: str) -> Any:
    return notify_config(
        {
            "QUANTUM_NOTIFY_SLACK_URL": apis.url + "/slack/hook",
            "QUANTUM_NOTIFY_MIN_INTERVAL_MS": "50",
            "QUANTUM_NOTIFY_SUMMARY_HOUR": "off",
            **extra,
        }
    )


def _lines(apis: ChatApis) -> list[str]:
    return [line for r in apis.slack for line in r.body["text"].split("\n")]


async def test_a_message_whose_answer_was_lost_is_sent_again_marked(
    redis_url: str, unique_names: dict[str, Any], apis: ChatApis, redis: aioredis.Redis
) -> None:
    settings = Settings(redis_url=redis_url, risk_stream=unique_names["key_prefix"] + ":risk", **unique_names)
    first = NoticeSidecar(redis, settings, _config(apis))
    await first.start()
    outbox = first.outbox
    await first.stop()
    # What a notifier killed while its request was out leaves: two notices queued, the first out.
    out = await redis.xadd(
        outbox.outbox_key, {"event_id": "e1", "kind": "risk", "text": "the one that was out"}
    )
    await redis.xadd(outbox.outbox_key, {"event_id": "e2", "kind": "risk", "text": "the next one"})
    await redis.set(outbox.inflight_key("slack"), out)
    second = NoticeSidecar(redis, settings, _config(apis))
    await second.start()
    try:
        await wait_for(lambda: len(apis.slack) >= 2, 20, "both messages")
        assert not await happens_within(lambda: len(apis.slack) > 2, 1.0)
    finally:
        await second.stop()
    assert [r.body["text"] for r in apis.slack] == [
        "(resent after a restart: may repeat)\nthe one that was out",
        "the next one",
    ]
    assert not await redis.exists(outbox.inflight_key("slack"))


async def test_the_user_stream_down_past_the_bound_then_back(
    redis_url: str, unique_names: dict[str, Any], apis: ChatApis, redis: aioredis.Redis
) -> None:
    settings = Settings(redis_url=redis_url, risk_stream=unique_names["key_prefix"] + ":risk", **unique_names)
    states = iter([True, False, False, False, False, True])
    now = [datetime(2026, 12, 6, 9, 58, 0, tzinfo=UTC)]
    reads = []

    async def read() -> bool | None:
        value = next(states, True)
        reads.append(value)
        now[0] += timedelta(seconds=30)
        return value

    sidecar = NoticeSidecar(
        redis,
        settings,
        _config(apis, QUANTUM_NOTIFY_USER_STREAM_DOWN_S="60"),
        read_connected=read,
        clock=lambda: now[0],
        user_stream_poll_s=0.05,
    )
    await sidecar.start()
    try:
        await wait_for(lambda: len(_lines(apis)) >= 2, 20, "the outage told, then its end")
    finally:
        await sidecar.stop()
    assert _lines(apis) == [
        "USER DATA STREAM DOWN since 09:59:00 UTC (60 s): fills are read by REST only",
        "user data stream back after 2m00s",
    ]


def _trade(trade_id: str, net: str, closed_at: datetime) -> Trade:
    return Trade(
        trade_id=trade_id,
        symbol="ETHUSDT",
        side="SHORT",
        status="closed",
        max_quantity=Decimal("0.5"),
        closing_quantity=Decimal("0.5"),
        entry_price=Decimal("3105.42"),
        exit_price=Decimal("3090"),
        opened_at=closed_at - timedelta(hours=1),
        closed_at=closed_at,
        duration_s=Decimal(3600),
        exit_reason="take_profit",
        realized_pnl=Decimal(net),
        commission=Decimal("0"),
        other_commissions={},
        funding=Decimal("0"),
        net_pnl=Decimal(net),
        intent_ids=(),
        model=None,
        strategy=None,
        events=2,
    )


async def test_the_daily_summary_once_at_its_hour(
    redis_url: str, unique_names: dict[str, Any], apis: ChatApis, redis: aioredis.Redis
) -> None:
    settings = Settings(redis_url=redis_url, risk_stream=unique_names["key_prefix"] + ":risk", **unique_names)
    at = datetime.now(UTC).replace(minute=0, second=5, microsecond=0)
    trades_key = f"{settings.key_prefix}:ledger:trades"
    for trade in (
        _trade("t-win", "7.71", at - timedelta(hours=3)),
        _trade("t-loss", "-2.5", at - timedelta(hours=2)),
        _trade("t-old", "100", at - timedelta(days=2)),  # before the window
    ):
        await redis.xadd(trades_key, {"payload": dumps(trade_to_json(trade))})
    config = _config(apis, QUANTUM_NOTIFY_SUMMARY_HOUR=str(at.hour))
    for _ in range(2):  # a restart within the hour does not send it again
        sidecar = NoticeSidecar(redis, settings, config, clock=lambda: at)
        await sidecar.start()
        try:
            await wait_for(lambda: len(apis.slack) >= 1, 20, "the summary")
            assert not await happens_within(lambda: len(apis.slack) > 1, 1.0)
        finally:
            await sidecar.stop()
    [summary] = _lines(apis)
    assert summary.startswith(
        f"Daily summary, 24 h to {at.date()} {at.hour:02d}:00 UTC: 2 trades, 1 won, 1 lost"
    )
    assert "net PnL +5.21 USDT" in summary and "best +7.71 ETHUSDT" in summary


async def test_the_governors_own_transitions_are_told(
    redis_url: str, unique_names: dict[str, Any], apis: ChatApis, redis: aioredis.Redis
) -> None:
    """The risk events as the governor's store publishes them (issue #28), not a hand-made copy."""
    from quantum_exec.risk.states import Request, TradingState
    from quantum_exec.risk.store import RiskStore

    settings = Settings(redis_url=redis_url, risk_stream=unique_names["key_prefix"] + ":risk", **unique_names)
    sidecar = NoticeSidecar(redis, settings, _config(apis))
    await sidecar.start()
    try:
        key = f"{settings.key_prefix}:notify:cursors"
        await wait_for(lambda: redis.hexists(key, settings.risk_stream), 20, "the notifier following")
        store = RiskStore(redis, settings)
        halt = Request(TradingState.HALTED, "operator check", "alice")
        await store.transition(halt, numbers={"daily_pnl": Decimal("-12.5")}, limit="max_daily_loss_usd")
        await store.transition(Request(TradingState.ACTIVE, "done", "alice"))
        await wait_for(lambda: len(_lines(apis)) >= 2, 20, "both transitions told")
    finally:
        await sidecar.stop()
    assert _lines(apis) == [
        "RISK ACTIVE -> HALTED (operator check) by alice, limit max_daily_loss_usd: daily_pnl=-12.5",
        "RISK HALTED -> ACTIVE (done) by alice",
    ]
