"""``quantum-exec notify`` reads one public series (``quantum_exec_user_stream_connected``) from
the service's ``/metrics``. Whatever answers on that local port gets the request: a local user who
binds it while the service is down (or restarting) must not receive the service's API token, the
token that halts, flattens and changes the risk limits. A scrape without credentials gets every
series but the per-symbol PnL and notional, so the notifier sends none."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

API_TOKEN = "the-services-control-token-0123456789"
BOT_TOKEN = "4839574812:AAFD39kkdpWt3ywyRZergyOLMaJhac60qc"
SERVICES = Path(__file__).resolve().parents[2] / "services"


class Squatter:
    """A listener on the port the notifier reads /metrics from, recording what it is sent."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization", ""))
        return web.Response(text="quantum_exec_user_stream_connected 1.0\n")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def squatter() -> AsyncIterator[Squatter]:
    server = Squatter()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _spawn_notifier(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "quantum_exec.app.cli", "notify", "--log-format", "json"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.parametrize("with_metrics_token", [False, True])
async def test_the_notifier_never_sends_the_api_token_to_the_metrics_port(
    squatter: Squatter,
    redis_url: str,
    unique_names: dict[str, Any],
    tmp_path: Path,
    with_metrics_token: bool,
) -> None:
    names = {f"QUANTUM_{k.upper()}": str(v) for k, v in unique_names.items()}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))},
        "PYTHONPATH": f"{SERVICES}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        **names,
        "QUANTUM_RISK_STREAM": unique_names["key_prefix"] + ":risk",
        "QUANTUM_REDIS_URL": redis_url,
        "QUANTUM_API_TOKEN": API_TOKEN,
        "QUANTUM_METRICS_PORT": str(squatter.port),
        "QUANTUM_NOTIFY_TELEGRAM_TOKEN": BOT_TOKEN,
        "QUANTUM_NOTIFY_TELEGRAM_CHAT_ID": "-100123456",
        "QUANTUM_NOTIFY_TELEGRAM_API": f"http://127.0.0.1:{squatter.port}",
        "QUANTUM_NOTIFY_SUMMARY_HOUR": "off",
    }
    if with_metrics_token:
        env["QUANTUM_METRICS_TOKEN"] = "the-scrape-only-token-0123456789"
    log = tmp_path / "notify.log"
    proc = _spawn_notifier(env, log)
    try:
        await wait_for(lambda: len(squatter.authorizations) >= 1, 30, "the notifier reading /metrics")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    assert all(API_TOKEN not in a for a in squatter.authorizations), squatter.authorizations
    assert all(a == "" for a in squatter.authorizations), squatter.authorizations
    assert API_TOKEN not in log.read_text()
