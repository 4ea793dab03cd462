"""Requests per second the simulator serves on loopback: a signed GET and MARKET order POSTs.

Runs the simulator in its own process (``python -m binance_sim --no-rate-limits``) so client and server
do not share one core, then drives it with aiohttp at a fixed concurrency for a few seconds each.
With ``--sockets N`` (default 20) the MARKET phase runs again while N user-data-stream WebSockets
receive every event (ORDER_TRADE_UPDATE x2, TRADE_LITE, ACCOUNT_UPDATE per order), to show that
fanning events out does not slow orders down.

    python bench/sim_rps.py [--seconds 3] [--concurrency 32] [--sockets 20]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import subprocess
import sys
import time
from collections.abc import Callable
from urllib.parse import urlencode

import aiohttp

API_KEY = "quantum-sim-key"
API_SECRET = b"quantum-sim-secret"


def signed(params: dict[str, str]) -> str:
    """Form-encoded params with timestamp and HMAC signature, as python-binance sends them."""
    query = urlencode({**params, "timestamp": str(int(time.time() * 1000))})
    return f"{query}&signature={hmac.new(API_SECRET, query.encode(), hashlib.sha256).hexdigest()}"


async def drive(
    session: aiohttp.ClientSession,
    make: Callable[[int], tuple[str, str, str | None]],
    seconds: float,
    workers: int,
) -> tuple[int, int]:
    """Run ``workers`` loops for ``seconds``; returns (ok responses, other responses)."""
    deadline = time.monotonic() + seconds
    counts = [0, 0]

    async def worker() -> None:
        n = 0
        while time.monotonic() < deadline:
            method, url, body = make(n)
            n += 1
            headers = {"X-MBX-APIKEY": API_KEY}
            if body is not None:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            async with session.request(method, url, data=body, headers=headers) as response:
                await response.read()
                counts[0 if response.status == 200 else 1] += 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    return counts[0], counts[1]


async def listen(session: aiohttp.ClientSession, url: str, counts: list[int], index: int) -> None:
    """Count the events one user-stream socket receives until it closes."""
    async with session.ws_connect(url) as ws:
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                counts[index] += 1


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process ``pid`` has used (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(base_url: str, seconds: float, workers: int, sockets: int, server_pid: int) -> None:
    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Fees of tens of thousands of fills would drain the fixture wallet into -2019 rejections.
        async with session.post(
            f"{base_url}/_sim/balance", json={"asset": "USDT", "balance": "1000000000"}
        ) as r:
            r.raise_for_status()

        def signed_get(n: int) -> tuple[str, str, str | None]:
            return "GET", f"{base_url}/fapi/v1/openOrders?{signed({'symbol': 'BTCUSDT'})}", None

        def market_order(n: int) -> tuple[str, str, str | None]:
            side = "BUY" if n % 2 == 0 else "SELL"
            body = signed({"symbol": "BTCUSDT", "side": side, "type": "MARKET", "quantity": "0.010"})
            return "POST", f"{base_url}/fapi/v1/order", body

        for name, make in (
            ("signed GET /fapi/v1/openOrders", signed_get),
            ("POST /fapi/v1/order MARKET", market_order),
        ):
            await drive(session, make, 0.5, workers)  # warm up connections
            started, cpu = time.monotonic(), cpu_seconds(server_pid)
            ok, other = await drive(session, make, seconds, workers)
            elapsed = time.monotonic() - started
            per_request = (cpu_seconds(server_pid) - cpu) / max(ok + other, 1) * 1e6
            print(
                f"{name:34s} {ok / elapsed:8.0f} req/s  ok={ok} non-200={other} concurrency={workers}"
                f"  server CPU {per_request:.0f} us/request"
            )
        if sockets:
            async with session.post(f"{base_url}/fapi/v1/listenKey", headers={"X-MBX-APIKEY": API_KEY}) as r:
                key = (await r.json())["listenKey"]
            counts = [0] * sockets
            ws_url = base_url.replace("http", "ws") + f"/private/ws/{key}"
            listeners = [asyncio.create_task(listen(session, ws_url, counts, i)) for i in range(sockets)]
            await drive(session, market_order, 0.5, workers)  # warm up, sockets connect
            before = sum(counts)
            started, cpu = time.monotonic(), cpu_seconds(server_pid)
            ok, other = await drive(session, market_order, seconds, workers)
            elapsed = time.monotonic() - started
            deadline = time.monotonic() + 10  # let the fan-out drain: 4 events per order per socket
            while sum(counts) - before < ok * 4 * sockets and time.monotonic() < deadline:  # noqa: ASYNC110 - a deadline poll of counters
                await asyncio.sleep(0.05)
            drained = time.monotonic() - started
            per_request = (cpu_seconds(server_pid) - cpu) / max(ok + other, 1) * 1e6
            delivered = sum(counts) - before
            name = f"POST /fapi/v1/order + {sockets} sockets"
            print(
                f"{name:34s} {ok / elapsed:8.0f} req/s  ok={ok} non-200={other} concurrency={workers}"
                f"  server CPU {per_request:.0f} us/request (events included)"
            )
            print(
                f"{'  events delivered':34s} {delivered / drained:8.0f} ev/s  "
                f"{delivered}/{ok * 4 * sockets} in {drained:.1f}s"
            )
            for task in listeners:
                task.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sockets", type=int, default=20)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "binance_sim", "--port", "0", "--no-rate-limits"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        base_url = line.split()[3]
        asyncio.run(run(base_url, args.seconds, args.concurrency, args.sockets, server.pid))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
