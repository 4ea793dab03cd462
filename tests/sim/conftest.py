"""Simulator test fixtures: a started Simulator, a python-binance client, a raw signed-HTTP helper."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from binance import AsyncClient
from yarl import URL

from binance_sim import SimConfig, Simulator
from binance_sim.engine import Engine
from binance_sim.market import load_market

API_KEY = "quantum-sim-key"
API_SECRET = "quantum-sim-secret"


def sign(query: str, secret: str = API_SECRET) -> str:
    """HMAC-SHA256 hex of ``query`` as Binance expects."""
    return hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()


def signed_query(params: dict[str, Any], secret: str = API_SECRET) -> str:
    """``params`` plus timestamp and signature, form-encoded."""
    full = {**params}
    full.setdefault("timestamp", int(time.time() * 1000))
    query = urlencode(full)
    return f"{query}&signature={sign(query, secret)}"


class Raw:
    """Raw HTTP against the simulator, for what python-binance cannot send (bad input, odd encodings)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base_url = base_url
        self.sign = sign
        self.signed_query = signed_query

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: str = "",
        body: str | None = None,
        api_key: str | None = API_KEY,
    ) -> tuple[int, Any, dict[str, str]]:
        headers = {} if api_key is None else {"X-MBX-APIKEY": api_key}
        if body is not None:
            # Binance takes form bodies; the simulator's control API only JSON.
            json_body = path.startswith("/_sim/")
            headers["Content-Type"] = "application/json" if json_body else "application/x-www-form-urlencoded"
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        async with self.session.request(method, URL(url, encoded=True), data=body, headers=headers) as r:
            assert r.content_type == "application/json", await r.text()
            return r.status, await r.json(), dict(r.headers)

    async def signed(
        self, method: str, path: str, params: dict[str, Any], *, in_body: bool | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        """Send signed like python-binance: GET in the query string, others in a form body."""
        payload = signed_query(params)
        use_body = method != "GET" if in_body is None else in_body
        if use_body:
            return await self.request(method, path, body=payload)
        return await self.request(method, path, query=payload)


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(rate_limits=False)


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[AsyncClient]:
    binance_client = AsyncClient(API_KEY, API_SECRET)
    binance_client.FUTURES_URL = sim.base_url + "/fapi"
    try:
        yield binance_client
    finally:
        await binance_client.close_connection()


@pytest.fixture
async def raw(sim: Simulator) -> AsyncIterator[Raw]:
    async with aiohttp.ClientSession() as session:
        yield Raw(session, sim.base_url)


class FakeClock:
    """A settable clock for the pure engine."""

    def __init__(self, now_ms: int = 1_763_683_200_000) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


@pytest.fixture
def engine_factory() -> Callable[..., Engine]:
    market = load_market()

    def make(slippage_bps: Decimal = Decimal(0), **options: Any) -> Engine:
        return Engine(market, FakeClock(), slippage_bps=slippage_bps, **options)

    return make
