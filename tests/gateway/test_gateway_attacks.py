"""The gateway under attack, over raw sockets where a well-behaved client cannot send the bytes:
header values no HTTP library writes, a proxy's second X-Forwarded-For line, bodies that never
arrive. Each answer is a refusal with its status (never a 500 or a traceback), nothing is
published, and the port keeps serving the producers afterwards."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
from redis import asyncio as aioredis

from quantum_exec.app.service import Service
from quantum_exec.contracts import ResultStatus
from quantum_exec.core.settings import Settings
from quantum_exec.ops.listener import MAX_CONNECTIONS
from quantum_exec.webhooks.auth import sign
from quantum_exec.webhooks.config import gateway_config
from quantum_exec.webhooks.run import GatewayProcess
from support.desk import Desk
from support.sim_state import position_amount
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BOT_SECRET = "bot-secret-0123456789-abcdefghij"
TV_SECRET = "tv-secret-0123456789-abcdefghijklmnop"
LISTED = "52.89.214.238"  # TradingView's webhook address: the one an attacker pretends to be
SOURCES = {
    "bot": {"kind": "hmac", "secret": BOT_SECRET, "rate_per_min": 1000},
    "tv-listed": {"kind": "tradingview", "secret": TV_SECRET, "allow_from": [LISTED]},
}
BODY_TIMEOUT_S = 2
CONTROL_TOKEN = "gateway-attack-control-token-0123456789"


@dataclass
class Gw:
    port: int
    redis: aioredis.Redis
    stream: str

    async def entries(self) -> list[Any]:
        return list(await self.redis.xrange(self.stream))

    async def raw(self, request: bytes, *, within_s: float = 15.0) -> bytes:
        """Send ``request`` as it is; the answer's bytes (all until the server closes or 2 s idle)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(request)
            await writer.drain()
            async with asyncio.timeout(within_s):
                return await reader.read(65536)
        finally:
            writer.close()


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.fixture
async def gw(redis_url: str, unique_names: dict[str, Any]) -> AsyncIterator[Gw]:
    settings = Settings(redis_url=redis_url, **unique_names)
    config = gateway_config(
        {
            "QUANTUM_GATEWAY_SOURCES": json.dumps(SOURCES),
            # The TLS proxy in front runs on this host.
            "QUANTUM_GATEWAY_TRUSTED_PROXIES": "127.0.0.1",
            "QUANTUM_GATEWAY_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        }
    )
    process = GatewayProcess(settings, replace(config, port=0), settings.redis_url)
    await process.start()
    redis = aioredis.Redis.from_url(redis_url, protocol=2)
    try:
        yield Gw(process.port, redis, unique_names["intent_stream"])
    finally:
        await process.stop()
        await redis.aclose()


def _intent(intent_id: str) -> bytes:
    return json.dumps(
        {"intent_id": intent_id, "symbol": "BTCUSDT", "side": "BUY", "position_size_usd": 500}
    ).encode()


def _post(path: str, body: bytes, *header_lines: bytes) -> bytes:
    head = b"".join(line + b"\r\n" for line in header_lines)
    return (
        f"POST {path} HTTP/1.1\r\nHost: gw\r\nContent-Length: {len(body)}\r\n".encode()
        + head
        + b"\r\n"
        + body
    )


def _signed(body: bytes) -> bytes:
    ts = time.time_ns() // 1_000_000
    return _post(
        "/v1/intents/bot",
        body,
        f"X-Quantum-Timestamp: {ts}".encode(),
        f"X-Quantum-Signature: {sign(BOT_SECRET, ts, body)}".encode(),
    )


async def test_a_timestamp_of_non_ascii_digits_is_401_not_a_500(
    gw: Gw, caplog: pytest.LogCaptureFixture
) -> None:
    """``str.isdigit`` is true for '²' and '٣'; ``int()`` refuses the first and reads the second."""
    body = _intent("tsdigits-1")
    caplog.set_level(logging.INFO)
    for raw_ts in ("²".encode(), "¹²³".encode(), "١٧٩٦٦٠٢٣٢٤٥٨٣".encode()):
        answer = await gw.raw(
            _post(
                "/v1/intents/bot",
                body,
                b"X-Quantum-Timestamp: " + raw_ts,
                b"X-Quantum-Signature: " + b"0" * 64,
            )
        )
        assert _status(answer) == 401, answer[:200]
        assert b"expected Unix milliseconds" in answer, answer[:300]
    assert _errors(caplog) == [] and await gw.entries() == []


async def test_a_second_x_forwarded_for_line_is_read_not_the_attackers_first(gw: Gw) -> None:
    """A proxy that adds its own X-Forwarded-For line (HAProxy's ``option forwardfor``) leaves the
    client's forged line first; RFC 9110 5.3: the lines are one list, in order."""
    alert = json.dumps(
        {"secret": TV_SECRET, "ticker": "BTCUSDT", "action": "buy", "contracts": "0.002"}
    ).encode()
    forged = _post(
        "/v1/intents/tv-listed",
        alert,
        f"X-Forwarded-For: {LISTED}".encode(),  # written by the attacker
        b"X-Forwarded-For: 203.0.113.9",  # added by the proxy: the attacker's real address
    )
    answer = await gw.raw(forged)
    assert _status(answer) == 403 and b"203.0.113.9" in answer, answer[:300]
    assert await gw.entries() == []
    # The listed sender through the same proxy still gets in (one line, or the proxy's second).
    for lines in (
        (f"X-Forwarded-For: {LISTED}".encode(),),
        (b"X-Forwarded-For: 10.1.2.3", f"X-Forwarded-For: {LISTED}".encode()),
    ):
        answer = await gw.raw(_post("/v1/intents/tv-listed", alert, *lines))
        assert _status(answer) == 202, answer[:300]


async def test_bodies_that_never_arrive_cannot_hold_the_port(gw: Gw) -> None:
    """Slowloris past the head: every connection the listener allows sends a complete head and a
    body that stops (one byte of a promised thousand, or a chunk that never ends). Each gets 408
    within the body timeout and the port serves a producer again."""
    stalls: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for n in range(MAX_CONNECTIONS):
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        if n % 2:
            writer.write(b"POST /v1/intents/bot HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000\r\n\r\n{")
        else:
            writer.write(
                b"POST /v1/intents/bot HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n{"
            )
        await writer.drain()
        stalls.append((reader, writer))
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S + 20):
            answers = await asyncio.gather(*(reader.read(65536) for reader, _ in stalls))
    except TimeoutError:
        raise AssertionError(
            f"{MAX_CONNECTIONS} stalled bodies still hold the gateway {BODY_TIMEOUT_S + 20}s later"
        ) from None
    finally:
        for _, writer in stalls:
            writer.close()
    assert {_status(a) for a in answers} == {408}, answers[0][:200]
    assert all(b"Connection: close" in a for a in answers), answers[0][:300]
    served: list[int] = []

    async def a_producer_gets_in() -> bool:
        # The closed sockets leave the listener's count as their close is processed.
        served.append(_status(await gw.raw(_signed(_intent(f"after-stall-{len(served)}")))))
        return served[-1] == 202

    await wait_for(a_producer_gets_in, 15, "the port to serve a producer after the stalls")
    assert set(served) <= {202, 503} and len(await gw.entries()) == 1


async def test_a_client_gone_mid_body_is_one_info_line_not_a_traceback(
    gw: Gw, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    writer.write(b'POST /v1/intents/bot HTTP/1.1\r\nHost: gw\r\nContent-Length: 1000\r\n\r\n{"a":')
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    def seen() -> bool:
        return bool(_errors(caplog)) or any(r.getMessage() == "gateway.refused" for r in caplog.records)

    await wait_for(seen, 15, "the gateway to notice the client left")
    assert _errors(caplog) == []
    assert await gw.entries() == []


async def test_a_producer_cannot_take_the_risk_governors_flatten_ids(desk: Desk) -> None:
    """The governor's flatten used to publish CLOSEs under ids anyone could predict
    (``risk-f1-BTCUSDT-1`` for the first flatten, rounds 1-5) and count a round done when that id's
    result was out. A producer holding a gateway secret (a leaked TradingView alert) could publish
    those ids first: the operator's halt --flatten then found its rounds "done" and left the
    position open. The gateway refuses the governor's namespace (the governor's own defence, for
    producers appending to the stream directly, is tests/risk/test_flatten_ids.py), and the flatten
    closes the position."""
    settings = desk.settings(
        metrics_port=0,
        metrics_host="127.0.0.1",
        watchdog=False,
        risk_stream=f"{desk.names['intent_stream']}:risk",
        api_token=CONTROL_TOKEN,
    )
    service = Service(settings)
    desk.services.append(service)
    await service.start()
    config = gateway_config({"QUANTUM_GATEWAY_SOURCES": json.dumps(SOURCES)})
    process = GatewayProcess(settings, replace(config, port=0), settings.redis_url)
    await process.start()
    gw = Gw(process.port, desk.redis, desk.names["intent_stream"])
    try:
        for round_ in range(1, 6):
            body = json.dumps(
                {"intent_id": f"risk-f1-BTCUSDT-{round_}", "symbol": "BTCUSDT", "side": "CLOSE"}
            ).encode()
            answer = await gw.raw(_signed(body))
            assert _status(answer) == 422 and b"risk-" in answer, answer[-300:]
    finally:
        await process.stop()
    assert await gw.entries() == []

    await desk.publish(intent_id="open-1", symbol="BTCUSDT", side="BUY", quantity="0.010", stop_loss_pct=3)
    assert (await desk.result("open-1")).status is ResultStatus.FILLED
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{service.metrics_port}/api/control/state",
            json={"state": "HALTED", "flatten": True, "reason": "the kill switch"},
            headers={"Authorization": f"Bearer {CONTROL_TOKEN}"},
        ) as response,
    ):
        assert response.status == 200, await response.text()
    # The exchange's own record: flat.
    await wait_for(lambda: position_amount(desk.sim, "BTCUSDT") == 0, 30, "the flatten to close BTCUSDT")
    rows = await desk.redis.xrange(settings.risk_stream)
    closes = [json.loads(f[b"payload"]) for _sid, f in rows]
    close_id = next(e["intent_id"] for e in closes if e["kind"] == "flatten_close")
    assert (await desk.result(close_id)).status is ResultStatus.FILLED
