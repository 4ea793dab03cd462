"""Attacks on the metrics port (issue #25), each against a real ``quantum-exec serve`` process.

Two services run for the module on loopback ports, both on the test Redis and the embedded
simulator: one in loopback mode (no token) and one with ``QUANTUM_API_TOKEN`` and
``QUANTUM_METRICS_TOKEN``. A client from another host cannot be made here without a network
namespace, so the "non-loopback" cases are the two that reach the same code from loopback and are
what an attacker actually sends: a scrape without credentials while a token is configured, and a
DNS-rebinding request (loopback source, foreign ``Host``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import asyncio as aioredis

from quantum_exec.contracts import encode_intent_fields
from support.waiting import poll_until, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

API_TOKEN = "api-token-for-the-security-suite"
SCRAPE_TOKEN = "scrape-token-for-prometheus-0001"
CONFIDENTIAL = ("quantum_exec_open_position_notional", "quantum_exec_ledger_net_pnl")
HEAD_TIMEOUT_S = 5.0  # the service's default (quantum_exec.ops.listener.HEAD_TIMEOUT_S)
MAX_CONNECTIONS = 64  # the service's default (quantum_exec.ops.listener.MAX_CONNECTIONS)


@dataclass
class Served:
    port: int
    names: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def events(self) -> list[dict[str, Any]]:
        """The service's JSON log lines so far."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                found.append({"level": "RAW", "event": line})
        return found


def _environment(runtime: Path, tmp: Path, redis_url: str, names: dict[str, str]) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))},
        "XDG_RUNTIME_DIR": str(runtime),
        "QUANTUM_STATE_DIR": str(tmp / "state"),
        "QUANTUM_REDIS_URL": redis_url,
        "QUANTUM_METRICS_PORT": "0",
        "QUANTUM_WATCHDOG": "false",
        "QUANTUM_LOG_FORMAT": "json",
        **{f"QUANTUM_{k.upper()}": v for k, v in names.items()},
    }


def _serve(tmp: Path, redis_url: str, **extra: str) -> Iterator[Served]:
    runtime = tmp / "run"
    runtime.mkdir(mode=0o700)
    tag = uuid.uuid4().hex[:10]
    names = {
        "intent_stream": f"sec:{tag}:intent",
        "result_stream": f"sec:{tag}:result",
        "consumer_group": f"sec:{tag}:group",
        "dlq_stream": f"sec:{tag}:dlq",
        "position_stream": f"sec:{tag}:position",
        "key_prefix": f"sec:{tag}:exec",
    }
    env = {**_environment(runtime, tmp, redis_url, names), **extra}
    log = tmp / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "quantum_exec.app.cli", "serve"], env=env, stdout=out, stderr=out
        )
    endpoints = runtime / "quantum-exec" / "endpoints.json"

    def port() -> int | None:
        try:
            return int(json.loads(endpoints.read_text())["metrics_port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    try:
        if not poll_until(lambda: port() is not None or proc.poll() is not None, 90):
            raise AssertionError(f"serve did not record its endpoints:\n{log.read_text()[-3000:]}")
        found = port()
        assert found is not None, f"serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
        yield Served(found, names, log, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def open_port(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Served]:
    """``serve`` without a token: loopback clients only."""
    yield from _serve(tmp_path_factory.mktemp("open"), redis_url)


@pytest.fixture(scope="module")
def token_port(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Served]:
    """``serve`` with an API token and a separate scrape token."""
    yield from _serve(
        tmp_path_factory.mktemp("token"),
        redis_url,
        QUANTUM_API_TOKEN=API_TOKEN,
        QUANTUM_METRICS_TOKEN=SCRAPE_TOKEN,
    )


def series(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


async def scrape(served: Served, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """One scrape answered (past the per-address scrape limit, the next allowed one)."""
    answer: list[tuple[int, str]] = []

    async def answered() -> bool:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{served.url}/metrics", headers=headers) as r,
        ):
            answer[:] = [(r.status, await r.text())]
            return r.status != 429

    await wait_for(answered, 10, "a scrape within the scrape limit", poll_s=0.25)
    return answer[0]


async def open_a_position(served: Served, redis_url: str) -> None:
    """A filled, protected BUY: the account view then has a per-symbol notional."""
    redis = aioredis.Redis.from_url(redis_url)
    try:
        intent = {
            "intent_id": f"sec-{uuid.uuid4().hex[:8]}",
            "symbol": "BTCUSDT",
            "side": "BUY",
            "position_size_usd": 500.0,
            "leverage": 2,
            "stop_loss_pct": 2,
            "take_profit_pct": 4,
        }
        await redis.xadd(served.names["intent_stream"], encode_intent_fields(intent, "sec"))  # type: ignore[arg-type]

        async def answered() -> bool:
            return bool(await redis.xlen(served.names["result_stream"]))

        await wait_for(answered, 60, "the intent's result")
    finally:
        await redis.aclose()


async def _closed_by_server(reader: asyncio.StreamReader, deadline_s: float) -> bool:
    """True when the server closes the connection (EOF) within ``deadline_s``."""
    try:
        async with asyncio.timeout(deadline_s):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    return True


# -- connections that hold the port --------------------------------------------------------------


async def test_idle_and_trickling_connections_are_closed(open_port: Served) -> None:
    idle = [await asyncio.open_connection("127.0.0.1", open_port.port) for _ in range(40)]
    trickling = []
    for _ in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", open_port.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never finished
        await writer.drain()
        trickling.append((reader, writer))
    try:
        closed = await asyncio.gather(
            *(_closed_by_server(reader, HEAD_TIMEOUT_S + 15) for reader, _ in idle + trickling)
        )
        assert all(closed), f"{closed.count(False)} of {len(closed)} silent connections still open"
    finally:
        for _, writer in idle + trickling:
            writer.close()
    async with aiohttp.ClientSession() as session, session.get(f"{open_port.url}/healthz") as r:
        assert r.status == 200


async def test_connections_past_the_cap_are_refused(open_port: Served) -> None:
    held = [await asyncio.open_connection("127.0.0.1", open_port.port) for _ in range(MAX_CONNECTIONS)]

    async def refused() -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", open_port.port)
        try:
            async with asyncio.timeout(1):
                head = await reader.read(200)
        except TimeoutError:
            return False
        finally:
            writer.close()
        return head.startswith(b"HTTP/1.1 503") and b"Retry-After" in head

    try:
        # Within the head timeout, while the held connections are still open.
        await wait_for(refused, HEAD_TIMEOUT_S - 1, "a connection past the cap to be refused")
    finally:
        for _, writer in held:
            writer.close()

    async def serves_again() -> bool:
        async with aiohttp.ClientSession() as session, session.get(f"{open_port.url}/healthz") as r:
            return r.status == 200

    await wait_for(serves_again, 10, "the port to serve again once the connections are gone")


async def test_a_scrape_flood_is_answered_429_per_address(open_port: Served) -> None:
    async def flood_from(address: str, count: int) -> list[int]:
        connector = aiohttp.TCPConnector(local_addr=(address, 0))
        async with aiohttp.ClientSession(connector=connector) as session:
            statuses = []
            for _ in range(count):
                async with session.get(f"{open_port.url}/metrics") as r:
                    statuses.append(r.status)
                    if r.status == 429:
                        assert int(r.headers["Retry-After"]) >= 1
            return statuses

    started = time.monotonic()
    flooded = await flood_from("127.0.0.3", 60)
    elapsed = time.monotonic() - started
    # A burst of 10, then 5 a second (quantum_exec.ops.health.SCRAPE_BURST, SCRAPES_PER_S).
    assert 429 in flooded and flooded.count(200) <= 11 + 5 * elapsed, (flooded, elapsed)
    # Another address (Prometheus) is not affected by the flood.
    assert (await flood_from("127.0.0.4", 1)) == [200]


# -- who may read -----------------------------------------------------------------------------------


async def test_foreign_host_is_refused_in_loopback_mode(open_port: Served, redis_url: str) -> None:
    await open_a_position(open_port, redis_url)
    async with aiohttp.ClientSession() as session:
        for host in (
            "evil.example",
            f"evil.example:{open_port.port}",
            "localhost:1",
            "127.0.0.1.evil.example",
        ):
            for path in ("/api/positions", "/"):
                async with session.get(f"{open_port.url}{path}", headers={"Host": host}) as r:
                    assert r.status == 421, (host, path, r.status)
                    body = await r.json()
                    assert "Host" in body["error"]["message"]
        for host in (f"localhost:{open_port.port}", f"127.0.0.1:{open_port.port}", "localhost"):
            async with session.get(f"{open_port.url}/api/positions", headers={"Host": host}) as r:
                assert r.status == 200, (host, await r.text())

    async def notional_seen() -> bool:
        status, text = await scrape(open_port)
        return status == 200 and "quantum_exec_open_position_notional" in series(text)

    await wait_for(notional_seen, 30, "the position's notional on a local scrape", poll_s=0.25)
    # A rebinding page scrapes with its own host name: it gets the operational series only.
    status, text = await scrape(open_port, {"Host": f"evil.example:{open_port.port}"})
    assert status == 200
    assert "quantum_exec_intents" in series(text)
    assert not set(CONFIDENTIAL) & series(text)


async def test_pnl_series_need_a_token_when_one_is_set(token_port: Served, redis_url: str) -> None:
    await open_a_position(token_port, redis_url)

    async def notional_seen() -> bool:
        status, text = await scrape(token_port, {"Authorization": f"Bearer {SCRAPE_TOKEN}"})
        return status == 200 and "quantum_exec_open_position_notional" in series(text)

    await wait_for(notional_seen, 30, "the notional series with the scrape token", poll_s=0.25)
    status, text = await scrape(token_port, {"Authorization": f"Bearer {API_TOKEN}"})
    assert status == 200 and "quantum_exec_open_position_notional" in series(text)
    # No credentials, even from loopback: the operational series, without PnL or notional.
    status, text = await scrape(token_port)
    assert status == 200
    assert "quantum_exec_intents" in series(text)
    assert not set(CONFIDENTIAL) & series(text)
    # The scrape token opens /metrics only, never the API.
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{token_port.url}/api/positions", headers={"Authorization": f"Bearer {SCRAPE_TOKEN}"}
        ) as r,
    ):
        assert r.status == 401


async def test_wrong_tokens_are_throttled_per_address(token_port: Served) -> None:
    # From 127.0.0.2, so the rest of the module's requests (from 127.0.0.1) keep their budget.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0), force_close=True)
    statuses = []
    async with aiohttp.ClientSession(connector=connector) as attacker:
        wrong = {"Authorization": "Bearer wrong-token-guess-000000"}
        for _ in range(30):
            async with attacker.get(f"{token_port.url}/api/positions", headers=wrong) as r:
                statuses.append(r.status)
                if r.status == 429:
                    retry_after = int(r.headers["Retry-After"])
                    break
        assert statuses[0] == 401 and statuses[-1] == 429, statuses
        assert len(statuses) <= 12, statuses
        assert retry_after >= 1
        # Throttled, the right token is not even compared: a guess cannot be confirmed.
        right = {"Authorization": f"Bearer {API_TOKEN}"}
        async with attacker.get(f"{token_port.url}/api/positions", headers=right) as r:
            assert r.status == 429
    async with (
        aiohttp.ClientSession() as operator,
        operator.get(
            f"{token_port.url}/api/positions", headers={"Authorization": f"Bearer {API_TOKEN}"}
        ) as r,
    ):
        assert r.status == 200


def test_a_short_token_is_refused_at_start(tmp_path: Path, redis_url: str) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {**_environment(runtime, tmp_path, redis_url, {}), "QUANTUM_API_TOKEN": "short-token"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantum_exec.app.cli", "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("serve started with an 11-character QUANTUM_API_TOKEN") from None
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "QUANTUM_API_TOKEN" in lines[0] and "16" in lines[0], lines
    assert "short-token" not in err.decode()


# -- what the log shows --------------------------------------------------------------------------


async def test_malformed_requests_log_one_rate_limited_warning(open_port: Served) -> None:
    def bad_request_lines() -> list[dict[str, Any]]:
        return [e for e in open_port.events() if e.get("event") == "http.bad_request"]

    before = len(bad_request_lines())

    async def send_malformed() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", open_port.port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n")
        await writer.drain()
        try:
            async with asyncio.timeout(10):
                return await reader.read()
        finally:
            writer.close()

    assert (await send_malformed()).split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    await wait_for(lambda: len(bad_request_lines()) > before, 10, "the malformed request logged")
    first = bad_request_lines()[before]
    assert first["level"] == "warning" and first["remote"] == "127.0.0.1" and first["status"] == 400

    started = time.monotonic()
    for _ in range(30):
        assert (await send_malformed()).split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    elapsed = time.monotonic() - started
    logged = len(bad_request_lines()) - before
    assert logged <= 2 + int(elapsed), f"{logged} lines for 31 malformed requests in {elapsed:.1f}s"
    errors = [e for e in open_port.events() if e.get("level") in ("error", "critical", "RAW")]
    assert not errors, errors[:3]
    assert "Traceback" not in open_port.log.read_text()


async def test_api_reads_are_logged(open_port: Served) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{open_port.url}/api/orders?symbol=BTCUSDT") as r,
    ):
        assert r.status == 200

    def logged() -> list[dict[str, Any]]:
        return [
            e
            for e in open_port.events()
            if e.get("event") == "api.request" and e.get("path") == "/api/orders?symbol=BTCUSDT"
        ]

    await wait_for(lambda: bool(logged()), 10, "the API read in the log")
    line = logged()[-1]
    assert line["level"] == "info" and line["remote"] == "127.0.0.1" and line["status"] == 200
