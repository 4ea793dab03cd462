"""Client cost of one signed request: python-binance's generic path against the service's lean one.

Both send the same requests, one at a time, to the simulator (its own process, RTT 0, limits off)
from one asyncio process: a signed ``GET /fapi/v1/order`` and a MARKET ``POST /fapi/v1/order``.
Per request it reports the wall time (client CPU + loopback + the simulator) and this process's
CPU time (``time.process_time``: building, signing, sending and parsing), alternating the two
paths in blocks so both see the same machine.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import SecretStr

from quantum_exec.core.settings import Settings
from quantum_exec.exchange.endpoints import EP_GET_ORDER, EP_NEW_ORDER, Endpoint
from quantum_exec.exchange.gateway import BinanceGateway

SYMBOL = "B00USDT"
BLOCK = 100


async def _measure(url: str, api_key: str, api_secret: str, count: int) -> dict[str, Any]:
    settings = Settings(
        exchange="sim",
        binance_base_url=url,
        api_key=SecretStr(api_key),
        api_secret=SecretStr(api_secret),
        rate_limit_pacing=False,
    )
    gateway = BinanceGateway(settings, url)
    try:
        return await _compare(gateway, url, count)
    finally:
        await gateway.close()


async def _compare(gateway: BinanceGateway, url: str, count: int) -> dict[str, Any]:
    await gateway.sync_time()
    client = gateway._client
    client.FUTURES_URL = url.rstrip("/") + "/fapi"
    n = 0

    def order_params() -> dict[str, str]:
        nonlocal n
        n += 1
        return {
            "symbol": SYMBOL,
            "side": "BUY" if n % 2 else "SELL",
            "type": "MARKET",
            "quantity": "3",  # 3 x mark 10 = 30, above the minimum notional 20
            "newClientOrderId": f"rp-{n}",
            "newOrderRespType": "RESULT",
        }

    query = {"symbol": SYMBOL, "origClientOrderId": "rp-1"}

    async def generic(ep: Endpoint, params: dict[str, str]) -> Any:
        return await client._request_futures_api(
            ep.method, ep.path, ep.signed, version=ep.version, data=params
        )

    async def lean(ep: Endpoint, params: dict[str, str]) -> Any:
        return await gateway._rest.send(ep, params)

    paths = {"python-binance": generic, "lean": lean}
    totals = {(name, kind): [0, 0.0, 0.0] for name in paths for kind in ("get", "post")}
    await lean(EP_NEW_ORDER, order_params())  # rp-1 exists for the GETs
    for name in paths:  # warm both connections
        await paths[name](EP_GET_ORDER, dict(query))
    done = 0
    while done < count:
        for name, send in paths.items():
            for kind, ep in (("get", EP_GET_ORDER), ("post", EP_NEW_ORDER)):
                row = totals[(name, kind)]
                for _ in range(BLOCK):
                    params = dict(query) if kind == "get" else order_params()
                    wall, cpu = time.perf_counter(), time.process_time()
                    await send(ep, params)
                    row[1] += time.perf_counter() - wall
                    row[2] += time.process_time() - cpu
                    row[0] += 1
        done += BLOCK
    us = 1e6
    return {
        f"{name} {kind}": {"requests": c, "wall_us": wall / c * us, "cpu_us": cpu / c * us}
        for (name, kind), (c, wall, cpu) in totals.items()
    }


def request_path(url: str, api_key: str, api_secret: str, count: int) -> dict[str, Any]:
    """Per-request wall and client CPU of both paths (``count`` requests of each kind per path)."""
    try:
        import uvloop

        return uvloop.run(_measure(url, api_key, api_secret, count))
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(_measure(url, api_key, api_secret, count))
