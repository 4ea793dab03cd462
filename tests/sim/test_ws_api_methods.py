"""WebSocket API methods beyond orders: order.modify, account.*, v2/account.*, userDataStream.*, and
``returnRateLimits=false`` (Binance's USD-M WebSocket API pages)."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import aiohttp
import orjson
import pytest

from binance_sim import Simulator
from binance_sim.ws_api import signed_payload

from .conftest import API_KEY, API_SECRET

pytestmark = pytest.mark.timeout(30)


def _signed(params: dict[str, str]) -> dict[str, str]:
    full = {**params, "apiKey": API_KEY, "timestamp": str(int(time.time() * 1000))}
    full["signature"] = hmac.new(API_SECRET.encode(), signed_payload(full), hashlib.sha256).hexdigest()
    return full


async def test_account_user_stream_and_modify_methods(sim: Simulator) -> None:
    url = sim.base_url.replace("http", "ws") + "/ws-fapi/v1"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:

        async def ask(method: str, params: dict[str, str]) -> dict[str, Any]:
            await ws.send_str(orjson.dumps({"id": method, "method": method, "params": params}).decode())
            return dict(orjson.loads((await ws.receive()).data))

        started = await ask("userDataStream.start", {"apiKey": API_KEY})
        assert started["status"] == 200 and len(started["result"]["listenKey"]) == 64
        assert (await ask("userDataStream.ping", {"apiKey": API_KEY}))["status"] == 200
        placed = await ask(
            "order.place",
            _signed(
                {
                    "symbol": "BTCUSDT",
                    "side": "BUY",
                    "type": "LIMIT",
                    "quantity": "0.010",
                    "price": "90000",
                    "timeInForce": "GTC",
                    "returnRateLimits": "false",
                }
            ),
        )
        assert placed["status"] == 200 and "rateLimits" not in placed
        modified = await ask(
            "order.modify",
            _signed(
                {
                    "symbol": "BTCUSDT",
                    "orderId": str(placed["result"]["orderId"]),
                    "side": "BUY",
                    "quantity": "0.010",
                    "price": "90500",
                }
            ),
        )
        assert modified["result"]["price"] == "90500.00" and "rateLimits" in modified
        status = await ask("v2/account.status", _signed({}))
        assert "positions" in status["result"] and "feeTier" not in status["result"]  # v3 shape
        old = await ask("account.status", _signed({}))
        assert "feeTier" in old["result"]  # v2 shape
        balances = await ask("v2/account.balance", _signed({}))
        assert {b["asset"] for b in balances["result"]} >= {"USDT"}
        positions = await ask("v2/account.position", _signed({"symbol": "BTCUSDT"}))
        assert positions["status"] == 200
        assert (await ask("userDataStream.stop", {"apiKey": API_KEY}))["status"] == 200
        refused = await ask("userDataStream.ping", {"apiKey": "nobody"})
        assert refused["error"]["code"] == -2015
