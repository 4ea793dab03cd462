"""``python -m binance_sim --host … --port …``: run the simulator standalone."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from decimal import Decimal

from binance_sim.config import DEFAULT_API_KEY, DEFAULT_API_SECRET, SimConfig
from binance_sim.server import serve_forever


def build_parser() -> argparse.ArgumentParser:
    """The flags shared with ``quantum-exec sim``."""
    parser = argparse.ArgumentParser(prog="binance_sim", description="Local Binance USD-M futures simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--api-secret", default=DEFAULT_API_SECRET)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--slippage-bps", type=Decimal, default=Decimal("0"))
    parser.add_argument("--no-rate-limits", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the flags and serve until SIGINT/SIGTERM."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = SimConfig(
        api_key=args.api_key,
        api_secret=args.api_secret,
        latency_ms=args.latency_ms,
        rate_limits=not args.no_rate_limits,
        slippage_bps=args.slippage_bps,
    )
    serve_forever(config, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
