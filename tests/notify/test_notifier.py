"""The notifier against local servers speaking Telegram's, Slack's and a webhook's request format.

A stop that fires on the simulator (the real service, its ledger) gives one Telegram message with
the trade's exact net PnL; a notifier SIGKILLed mid-burst and started again sends every notice
exactly once, honouring a 429's retry_after, and its bot token never appears in its output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from redis import asyncio as aioredis

from quantum_exec.contracts import ExecutionResult, ProtectionState, ResultStatus, encode_result_fields
from quantum_exec.core.settings import Settings
from quantum_exec.notify.config import notify_config
from quantum_exec.notify.sidecar import NoticeSidecar
from support.chat_apis import ChatApis
from support.desk import Desk
from support.waiting import happens_within, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOKEN = "4839574812:AAFD39kkdpWt3ywyRZergyOLMaJhac60qc"
SERVICES = Path(__file__).resolve().parents[2] / "services"


@pytest.fixture
async def apis() -> AsyncIterator[ChatApis]:
    server = ChatApis(TOKEN)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _env(apis: ChatApis, **extra: str) -> dict[str, str]:
    return {
        "QUANTUM_NOTIFY_TELEGRAM_TOKEN": TOKEN,
        "QUANTUM_NOTIFY_TELEGRAM_CHAT_ID": apis.chat_id,
        "QUANTUM_NOTIFY_TELEGRAM_API": apis.url,
        "QUANTUM_NOTIFY_SUMMARY_HOUR": "off",
        **extra,
    }


async def _following(redis: aioredis.Redis, settings: Settings) -> None:
    """Wait until the notifier holds its lease and has set its cursors (it tells what follows)."""
    key = f"{settings.key_prefix}:notify:cursors"

    async def ready() -> bool:
        # result, position, ledger trades, dead letters, risk
        return int(await redis.hlen(key)) == 5

    await wait_for(ready, 20, "the notifier following the streams")


async def test_a_stop_that_fires_is_one_message_with_the_trades_exact_net_pnl(
    desk: Desk, apis: ChatApis
) -> None:
    service = await desk.service(risk_stream=desk.names["key_prefix"] + ":risk")
    settings = service.settings
    sidecar = NoticeSidecar(
        desk.redis, settings, notify_config(_env(apis, QUANTUM_NOTIFY_MIN_INTERVAL_MS="100"))
    )
    await sidecar.start()
    try:
        await _following(desk.redis, settings)
        mark = desk.sim.engine.mark("BTCUSDT")
        await desk.publish(
            intent_id="stop-1",
            symbol="BTCUSDT",
            side="BUY",
            quantity="0.010",
            stop_loss=str((mark * Decimal("0.98")).quantize(Decimal("0.1"))),
            take_profit=str((mark * Decimal("1.05")).quantize(Decimal("0.1"))),
        )
        result = await desk.result("stop-1")
        assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
        assert result.stop_loss is not None
        desk.sim.set_mark_price("BTCUSDT", mark * Decimal("0.97"))
        await wait_for(lambda: len(apis.telegram) >= 1, 20, "the stop's message")
        # Nothing else comes: the protected entry is not news, the stop's fill is told once.
        assert not await happens_within(lambda: len(apis.telegram) > 1, 2.0)
    finally:
        await sidecar.stop()
    [message] = apis.telegram
    assert message.body["chat_id"] == apis.chat_id
    stop = desk.algo(result.stop_loss.client_algo_id)
    assert stop is not None and stop["algoStatus"] == "FINISHED"
    fills = desk.trades_of(result.order_id or 0) + desk.trades_of(int(stop["actualOrderId"]))
    net = sum((Decimal(t["realizedPnl"]) - Decimal(t["commission"]) for t in fills), Decimal(0))
    expected = ("+" if net > 0 else "") + format(net.normalize(), "f")
    text = message.body["text"]
    assert text.startswith("BTCUSDT LONG closed by its stop loss: 0.01 @ ")
    assert f"net PnL {expected} USDT" in text, (text, net)


def _rejected(intent_id: str) -> dict[str, bytes]:
    result = ExecutionResult.model_validate(
        {
            "symbol": "ETHUSDT",
            "action": "SELL",
            "intent_id": intent_id,
            "status": "rejected",
            "error": {"code": "STALE_INTENT", "source": "validation", "message": "published 40.0s ago"},
        }
    )
    return encode_result_fields(result)


class NotifierProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = {
            **os.environ,
            "PYTHONPATH": f"{SERVICES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            **env,
        }
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "quantum_exec.app.cli", "notify", "--log-format", "json"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)


async def test_killed_mid_burst_and_restarted_every_notice_is_sent_exactly_once(
    redis_url: str, unique_names: dict[str, Any], apis: ChatApis, tmp_path: Path
) -> None:
    unique_names = {**unique_names, "risk_stream": unique_names["key_prefix"] + ":risk"}
    settings = Settings(redis_url=redis_url, **unique_names)
    names = {f"QUANTUM_{k.upper()}": str(v) for k, v in unique_names.items()}
    env = _env(
        apis,
        QUANTUM_REDIS_URL=redis_url,
        QUANTUM_NOTIFY_MIN_INTERVAL_MS="1500",
        QUANTUM_METRICS_PORT="1",  # no service here: the user-stream watch reads nothing
        **names,
    )
    redis = aioredis.Redis.from_url(redis_url, protocol=2)
    notifier = NotifierProcess(env, tmp_path / "notifier.log")
    sent_key = f"{settings.key_prefix}:notify:sent:telegram"
    inflight_key = f"{settings.key_prefix}:notify:inflight:telegram"
    try:
        notifier.spawn()
        await _following(redis, settings)
        ids = [f"burst-{n:02d}" for n in range(36)]
        for intent_id in ids[:12]:
            await redis.xadd(settings.result_stream, _rejected(intent_id))  # type: ignore[arg-type]
        await wait_for(lambda: len(apis.telegram) >= 1, 20, "the first message")
        await wait_for(lambda: redis.exists(sent_key), 10, "the first delivery recorded")
        for intent_id in ids[12:24]:
            await redis.xadd(settings.result_stream, _rejected(intent_id))  # type: ignore[arg-type]
        outbox = f"{settings.key_prefix}:notify:outbox"

        async def queued_behind() -> bool:
            sent = (await redis.get(sent_key) or b"0-0").decode()
            return len(await redis.xrange(outbox, min="(" + sent)) > 0

        await wait_for(queued_behind, 10, "notices waiting behind the paced sender")
        # Mid-burst, between two sends (the pacing wait): no request is out.
        assert not await redis.exists(inflight_key)
        notifier.kill()
        for intent_id in ids[24:]:
            await redis.xadd(settings.result_stream, _rejected(intent_id))  # type: ignore[arg-type]
        apis.refusals = [("429", 1), ("500", 0)]  # the restarted one meets a rate limit, then an error
        notifier.spawn()

        def all_told() -> bool:
            lines = apis.telegram_lines()
            return all(any(f"[{i}]" in line for line in lines) for i in ids)

        await wait_for(all_told, 40, "every notice delivered")
        assert not await happens_within(lambda: len(apis.telegram_lines()) > len(ids), 2.0)
    finally:
        notifier.stop()
        await redis.aclose()
    lines = apis.telegram_lines()
    assert sorted(line.rsplit("[", 1)[1].rstrip("]") for line in lines) == ids  # each exactly once
    assert lines[0] == "ETHUSDT SELL rejected: STALE_INTENT published 40.0s ago [burst-00]"
    assert apis.refused == 2
    # Bursts are merged: far fewer messages than notices.
    assert len(apis.telegram) <= 6, [len(r.body["text"].split("\n")) for r in apis.telegram]
    output = (tmp_path / "notifier.log").read_text()
    assert "notify.send_failed" in output and "429" in output
    assert TOKEN not in output and TOKEN.split(":")[1] not in output


async def test_slack_and_webhook_get_their_formats(
    redis_url: str, unique_names: dict[str, Any], apis: ChatApis
) -> None:
    settings = Settings(redis_url=redis_url, risk_stream=unique_names["key_prefix"] + ":risk", **unique_names)
    config = notify_config(
        {
            "QUANTUM_NOTIFY_SLACK_URL": apis.url + "/slack/hook",
            "QUANTUM_NOTIFY_WEBHOOK_URL": apis.url + "/hook",
            "QUANTUM_NOTIFY_MIN_INTERVAL_MS": "100",
            "QUANTUM_NOTIFY_SUMMARY_HOUR": "off",
        }
    )
    redis = aioredis.Redis.from_url(redis_url, protocol=2)
    sidecar = NoticeSidecar(redis, settings, config)
    await sidecar.start()
    try:
        await _following(redis, settings)
        await redis.xadd(
            settings.dlq_stream,
            {"reason": "INVALID_PAYLOAD", "message": "payload is not valid JSON", "stream_id": "17-0"},
        )
        await redis.xadd(
            settings.risk_stream,
            {
                "event_type": "risk.event",
                "payload": json.dumps(
                    {
                        "kind": "transition",
                        "from": "ACTIVE",
                        "to": "REDUCING",
                        "reason": "daily loss",
                        "by": "governor",
                        "limit": "max_daily_loss_usd",
                        "numbers": {"daily_pnl": -250.5},
                    }
                ),
            },
        )
        await wait_for(
            lambda: sum(len(r.body["text"].split("\n")) for r in apis.slack) >= 2, 20, "both notices on Slack"
        )
        await wait_for(
            lambda: sum(len(r.body["notices"]) for r in apis.webhook) >= 2, 20, "both on the webhook"
        )
    finally:
        await sidecar.stop()
        await redis.aclose()
    slack_lines = [line for r in apis.slack for line in r.body["text"].split("\n")]
    assert slack_lines == [
        "DEAD LETTER INVALID_PAYLOAD: payload is not valid JSON [entry 17-0]",
        "RISK ACTIVE -> REDUCING (daily loss) by governor, limit max_daily_loss_usd: daily_pnl=-250.5",
    ]
    notices = [n for r in apis.webhook for n in r.body["notices"]]
    assert [n["kind"] for n in notices] == ["dead_letter", "risk"]
    assert notices[0]["event_id"].startswith("dlq:") and notices[1]["event_id"].startswith("risk:")
    assert all(r.headers.get("X-Quantum-Delivery") for r in apis.webhook)
