"""``quantum-exec gateway`` as an operator runs it: a bad setting is one line and exit 2; running,
it serves on its port, ignores the exchange settings it has no use for, and stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from quantum_exec.webhooks.auth import sign
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SERVICES = Path(__file__).resolve().parents[2] / "services"
SECRET = "bot-secret-0123456789-abcdefghij"


def _env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))}
    return {**base, "PYTHONPATH": str(SERVICES), **extra}


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quantum_exec.app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_bad_sources_are_one_line_naming_the_variable_and_never_the_secret() -> None:
    proc = _cli(
        "gateway", env=_env(QUANTUM_GATEWAY_SOURCES='{"bot": {"kind": "hmac", "secret": "short-secret"}}')
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("quantum-exec: QUANTUM_GATEWAY_SOURCES['bot'].secret: must be a string")
    assert "short-secret" not in proc.stderr and "Traceback" not in proc.stderr
    proc = _cli("gateway", env=_env())
    assert proc.returncode == 2 and "QUANTUM_GATEWAY_SOURCES: no source configured" in proc.stderr


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "quantum_exec.app.cli", "gateway"], env=env, stdout=out, stderr=out
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_gateway_serves_and_stops_on_sigterm(
    redis_url: str, unique_names: dict[str, Any], tmp_path: Path
) -> None:
    port = _free_port()
    sources = tmp_path / "sources.json"
    sources.write_text(json.dumps({"bot": {"kind": "hmac", "secret": SECRET}}))
    sources.chmod(0o600)
    env = _env(
        QUANTUM_REDIS_URL=redis_url,
        QUANTUM_INTENT_STREAM=unique_names["intent_stream"],
        QUANTUM_KEY_PREFIX=unique_names["key_prefix"],
        QUANTUM_GATEWAY_PORT=str(port),
        QUANTUM_GATEWAY_SOURCES=str(sources),
        # The service's live settings in a shared file do not stop the gateway: it has no use for them.
        QUANTUM_EXCHANGE="live",
    )
    log = tmp_path / "gateway.log"
    proc = _spawn(env, log)
    try:
        body = json.dumps(
            {"intent_id": "cli-1", "symbol": "BTCUSDT", "side": "BUY", "position_size_usd": 200}
        ).encode()

        async def accepted() -> bool:
            ts = time.time_ns() // 1_000_000
            headers = {"X-Quantum-Timestamp": str(ts), "X-Quantum-Signature": sign(SECRET, ts, body)}
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.post(f"http://127.0.0.1:{port}/v1/intents/bot", data=body, headers=headers) as r,
                ):
                    return r.status in (200, 202)
            except aiohttp.ClientConnectionError:
                return False

        await wait_for(accepted, 20, "the gateway accepting an intent")
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    output = log.read_text()
    assert '"event": "gateway.intent"' in output or "gateway.intent" in output
    assert SECRET not in output
