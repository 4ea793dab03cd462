"""The simulator in its own process with the bench fixture: ``python -m bench.simserver ...``.

``python -m binance_sim`` has no fixture flags; this is the same ``serve_forever`` with
``SimConfig(exchange_info_path=..., market_state_path=...)``. Prints ``SIM <base url>`` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

from binance_sim import SimConfig, Simulator


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--no-rate-limits", action="store_true")
    parser.add_argument("--exchange-info", type=Path)
    parser.add_argument("--market-state", type=Path)
    args = parser.parse_args()
    config = SimConfig(
        latency_ms=args.latency_ms,
        rate_limits=not args.no_rate_limits,
        exchange_info_path=args.exchange_info,
        market_state_path=args.market_state,
    )

    async def serve() -> None:
        sim = Simulator(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await sim.start("127.0.0.1", 0)
        print(f"SIM {sim.base_url}", flush=True)
        try:
            await stop.wait()
        finally:
            await sim.stop()

    runner: Any = asyncio.run
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    runner(serve())


if __name__ == "__main__":
    main()
