"""The gateway over real HTTP and a real Redis: what it publishes, and everything it refuses with
nothing reaching the stream. The last test runs the whole path: a TradingView alert becomes a
filled, protected position on the simulator through the real service."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from redis import asyncio as aioredis

from quantum_exec.contracts import ProtectionState, ResultStatus, decode_entry, parse_intent
from quantum_exec.core.errors import IntentRejected
from quantum_exec.core.settings import Settings
from quantum_exec.webhooks.auth import sign
from quantum_exec.webhooks.config import gateway_config
from quantum_exec.webhooks.run import GatewayProcess
from support.desk import Desk
from support.sim_state import algo_orders, position_amount

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

BOT_SECRET = "bot-secret-0123456789-abcdefghij"
TV_SECRET = "tv-secret-0123456789-abcdefghijklmnop"
SOURCES = {
    "bot": {"kind": "hmac", "secret": BOT_SECRET, "rate_per_min": 5},
    "tv": {"kind": "tradingview", "secret": TV_SECRET, "rate_per_min": 100},
    "tv-listed": {"kind": "tradingview", "secret": TV_SECRET, "allow_from": ["52.89.214.238"]},
}


class Client:
    def __init__(self, url: str, redis: aioredis.Redis, stream: str) -> None:
        self.url, self.redis, self.stream = url, redis, stream

    async def post(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + path, data=body, headers=headers or {}) as response,
        ):
            return response.status, json.loads(await response.read()), dict(response.headers)

    async def signed(
        self, body: bytes, *, ts_ms: int | None = None, secret: str = BOT_SECRET
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        ts = ts_ms if ts_ms is not None else time.time_ns() // 1_000_000
        headers = {"X-Quantum-Timestamp": str(ts), "X-Quantum-Signature": sign(secret, ts, body)}
        return await self.post("/v1/intents/bot", body, headers)

    async def entries(self) -> list[dict[bytes, bytes]]:
        return [fields for _sid, fields in await self.redis.xrange(self.stream)]


def _gateway(settings: Settings, **env: str) -> GatewayProcess:
    config = gateway_config({"QUANTUM_GATEWAY_SOURCES": json.dumps(SOURCES), **env})
    return GatewayProcess(settings, replace(config, port=0), settings.redis_url)


@pytest.fixture
async def gw(redis_url: str, unique_names: dict[str, Any]) -> AsyncIterator[Client]:
    settings = Settings(redis_url=redis_url, **unique_names)
    process = _gateway(settings, QUANTUM_GATEWAY_MAX_BODY_BYTES="2048")
    await process.start()
    redis = aioredis.Redis.from_url(redis_url, protocol=2)
    try:
        yield Client(f"http://127.0.0.1:{process.port}", redis, unique_names["intent_stream"])
    finally:
        await process.stop()
        await redis.aclose()


def _intent(**extra: Any) -> bytes:
    return json.dumps(
        {"symbol": "BTCUSDT", "side": "BUY", "position_size_usd": 500, "leverage": 3, **extra}
    ).encode()


async def test_a_signed_intent_is_published_once_with_its_source(gw: Client) -> None:
    body = _intent(intent_id="bot-1", stop_loss_pct=1.5, take_profit_pct=3, model="m7")
    status, answer, _ = await gw.signed(body)
    assert status == 202 and answer["status"] == "accepted" and answer["intent_id"] == "bot-1"
    [entry] = await gw.entries()
    assert entry[b"source"] == b"bot" and entry[b"event_type"] == b"trade.intent"
    published = decode_entry(entry)
    assert published == decode_entry({"payload": body}) and published["model"] == "m7"
    assert answer["stream_id"] == (await gw.redis.xrange(gw.stream))[0][0].decode()

    # The same intent again (a retry, newly signed): accepted once.
    status, answer, _ = await gw.signed(body)
    assert (status, answer["status"], answer["intent_id"]) == (200, "duplicate", "bot-1")
    # The same id for another intent: a conflict, the service's code.
    status, answer, _ = await gw.signed(_intent(intent_id="bot-1", position_size_usd=900))
    assert status == 409 and answer["error"]["code"] == "INTENT_ID_CONFLICT"
    assert len(await gw.entries()) == 1

    # Without an intent_id the gateway names it, so the producer can follow its result.
    status, answer, _ = await gw.signed(_intent())
    assert status == 202 and answer["intent_id"].startswith("gw-")
    assert decode_entry((await gw.entries())[-1])["intent_id"] == answer["intent_id"]


async def test_invalid_intents_get_the_services_own_reason(gw: Client) -> None:
    for body in (
        _intent(leverage=500),
        _intent(side="HOLD"),
        _intent(order_type="LIMIT"),
        b'{"side": "BUY"}',
    ):
        status, answer, _ = await gw.signed(body)
        payload = json.loads(body)
        with pytest.raises(IntentRejected) as service:
            parse_intent({"intent_id": "x", **payload} if "intent_id" not in payload else payload)
        assert status == 422
        assert answer["error"] == {"code": service.value.code, "message": service.value.message}
    for body, fragment in ((b"{not json", "not valid JSON"), (b"[1, 2]", "must be a JSON object")):
        status, answer, _ = await gw.signed(body)
        assert (
            status == 400
            and answer["error"]["code"] == "INVALID_PAYLOAD"
            and fragment in answer["error"]["message"]
        )
    assert await gw.entries() == []


async def test_forged_replayed_late_and_unknown_are_401_and_nothing_is_published(gw: Client) -> None:
    body = _intent(intent_id="bot-2")
    now = time.time_ns() // 1_000_000
    assert (await gw.signed(body, secret="a-forger-guessing-the-secret!!"))[0] == 401
    assert (await gw.signed(body, ts_ms=now - 61_000))[0] == 401  # a replay after 61 s
    assert (await gw.signed(body, ts_ms=now + 61_000))[0] == 401
    headers = {"X-Quantum-Timestamp": str(now), "X-Quantum-Signature": sign(BOT_SECRET, now, body)}
    assert (await gw.post("/v1/intents/bot", body, {**headers, "X-Quantum-Signature": "0" * 64}))[0] == 401
    assert (await gw.post("/v1/intents/bot", body))[0] == 401  # unsigned
    status, answer, _ = await gw.post("/v1/intents/nobody", body, headers)
    assert status == 401 and answer["error"]["code"] == "UNAUTHENTICATED"
    assert await gw.entries() == []
    # The genuine request goes through once; the same bytes sent again are a replay.
    assert (await gw.post("/v1/intents/bot", body, headers))[0] == 202
    status, answer, _ = await gw.post("/v1/intents/bot", body, headers)
    assert status == 401 and "replay" in answer["error"]["message"]
    assert len(await gw.entries()) == 1


async def test_tradingview_secret_allow_list_and_oversized_bodies(gw: Client) -> None:
    alert = {"ticker": "BTCUSDT.P", "action": "buy", "contracts": "0.002", "market_position": "long"}
    for path, body in (
        ("/v1/intents/tv", {**alert, "secret": TV_SECRET[:-1] + "x"}),
        ("/v1/intents/tv", alert),
        ("/v1/intents/tv/" + TV_SECRET + "x", alert),
    ):
        status, answer, _ = await gw.post(path, json.dumps(body).encode())
        assert status == 401 and TV_SECRET not in json.dumps(answer)
    # A listed source refuses any other sender, even with the right secret.
    status, answer, _ = await gw.post(
        "/v1/intents/tv-listed", json.dumps({**alert, "secret": TV_SECRET}).encode()
    )
    assert status == 403 and "127.0.0.1" in answer["error"]["message"]
    big = json.dumps({**alert, "secret": TV_SECRET, "note": "x" * 3000}).encode()
    status, answer, _ = await gw.post("/v1/intents/tv", big)
    assert status == 413 and answer["error"]["code"] == "BODY_TOO_LARGE"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(6):
            yield b" " * 500

    async with (
        aiohttp.ClientSession() as session,
        session.post(gw.url + "/v1/intents/tv", data=chunks()) as r,
    ):
        assert r.status == 413
    assert await gw.entries() == []
    # Path secret and body secret both work; the secret never reaches the stream.
    for path, body in (
        ("/v1/intents/tv", {**alert, "secret": TV_SECRET}),
        ("/v1/intents/tv/" + TV_SECRET, alert),
    ):
        status, answer, _ = await gw.post(path, json.dumps(body).encode())
        assert status == 202, answer
    entries = await gw.entries()
    assert len(entries) == 2 and all(TV_SECRET.encode() not in b"".join(e.values()) for e in entries)
    assert {decode_entry(e)["symbol"] for e in entries} == {"BTCUSDT"}


async def test_a_flood_is_cut_at_the_sources_rate_with_retry_after(gw: Client) -> None:
    answers = [await gw.signed(_intent(intent_id=f"flood-{n}")) for n in range(12)]
    statuses = [a[0] for a in answers]
    assert statuses[:5] == [202] * 5 and set(statuses[5:]) == {429}
    assert all(int(a[2]["Retry-After"]) >= 1 for a in answers[5:])
    assert len(await gw.entries()) == 5


async def test_a_tradingview_alert_becomes_a_filled_protected_position(desk: Desk, redis_url: str) -> None:
    """Acceptance: alert -> gateway -> stream -> the real service -> the simulator."""
    await desk.service()
    process = _gateway(desk.settings())
    await process.start()
    try:
        alert = {
            "secret": TV_SECRET,
            "intent_id": "tv-Long-1",
            "ticker": "BINANCE:BTCUSDT.P",
            "action": "buy",
            "contracts": "0.003",
            "market_position": "long",
            "leverage": 3,
            "stop_loss_pct": 1.5,
            "take_profit_pct": 3,
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{process.port}/v1/intents/tv", json=alert) as response,
        ):
            assert response.status == 202, await response.text()
        result = await desk.result("tv-Long-1", timeout_s=30)
    finally:
        await process.stop()
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert position_amount(desk.sim, "BTCUSDT") == Decimal("0.003")  # the exchange's own record
    armed = algo_orders(desk.sim, symbol="BTCUSDT", status="NEW")
    assert sorted(a["orderType"] for a in armed) == ["STOP_MARKET", "TAKE_PROFIT_MARKET"]
    assert all(a["clientAlgoId"].startswith("qx") for a in armed)


async def test_redis_unreachable_is_503_in_one_line(unique_names: dict[str, Any]) -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", **unique_names)
    process = _gateway(settings)
    await process.start()
    try:
        client = Client(f"http://127.0.0.1:{process.port}", None, "")  # type: ignore[arg-type]
        status, answer, headers = await client.signed(_intent(intent_id="down-1"))
    finally:
        await process.stop()
    assert status == 503 and answer["error"]["code"] == "UNAVAILABLE" and headers["Retry-After"] == "1"
