"""Command-line flags of the simulator (``python -m binance_sim``; ``quantum-exec sim`` declares the same
names) and the SimConfig they make."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

from binance_sim.book import BookConfig
from binance_sim.config import DEFAULT_API_KEY, DEFAULT_API_SECRET, SimConfig
from binance_sim.funding import DEFAULT_FUNDING_RATE, FundingConfig
from binance_sim.walk import WalkConfig


def build_parser() -> argparse.ArgumentParser:
    """The flags shared with ``quantum-exec sim`` (which declares the same names)."""
    parser = argparse.ArgumentParser(prog="binance_sim", description="Local Binance USD-M futures simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--api-secret", default=DEFAULT_API_SECRET)
    parser.add_argument("--ed25519-public-key", type=Path, default=None, metavar="FILE")
    parser.add_argument("--rsa-public-key", type=Path, default=None, metavar="FILE")
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--no-rate-limits", action="store_true")
    parser.add_argument("--slippage-bps", type=Decimal, default=Decimal("0"))
    parser.add_argument("--depth", action="append", default=[], metavar="[SYMBOL=]USDT")
    parser.add_argument("--spread-bps", type=Decimal, default=Decimal("0"))
    parser.add_argument("--level-bps", type=Decimal, default=Decimal("0"))
    parser.add_argument("--walk", type=Decimal, default=None, metavar="VOL")
    parser.add_argument("--walk-interval", type=float, default=1.0, metavar="SECONDS")
    parser.add_argument("--walk-seed", type=int, default=0)
    # Unset: each symbol's own interval (the market state's fundingIntervalHours, else 8 h).
    parser.add_argument("--funding-interval", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--funding-rate", type=Decimal, default=DEFAULT_FUNDING_RATE)
    parser.add_argument("--no-funding", action="store_true")
    parser.add_argument("--funding-premium", action="store_true")
    parser.add_argument("--no-liquidation", action="store_true")
    parser.add_argument("--state", type=Path, default=None, metavar="FILE")
    return parser


def parse_depths(values: Sequence[str]) -> tuple[Decimal | None, dict[str, Decimal]]:
    """``--depth`` values (``USDT`` for every symbol, ``SYMBOL=USDT`` for one; later ones win) as the
    default notional per level and the per-symbol ones."""
    default: Decimal | None = None
    per_symbol: dict[str, Decimal] = {}
    for value in values:
        symbol, _, amount = value.rpartition("=")
        try:
            notional = Decimal(amount)
        except InvalidOperation:
            raise ValueError(f"--depth {value}: expected USDT or SYMBOL=USDT") from None
        if not notional.is_finite() or notional <= 0:
            raise ValueError(f"--depth {value}: the notional per level must be positive")
        if symbol:
            per_symbol[symbol.upper()] = notional
        else:
            default = notional
    return default, per_symbol


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The SimConfig of parsed flags (this parser's or ``quantum-exec sim``'s). Raises ValueError."""
    depth, depth_by_symbol = parse_depths(getattr(args, "depth", None) or [])
    book = BookConfig(
        depth_notional=depth,
        depth_by_symbol=depth_by_symbol,
        spread_bps=getattr(args, "spread_bps", Decimal(0)),
        level_bps=getattr(args, "level_bps", Decimal(0)),
    )
    walk_volatility = getattr(args, "walk", None)
    walk_interval = getattr(args, "walk_interval", 1.0)
    funding_interval: float | None = getattr(args, "funding_interval", None)
    if walk_volatility is not None and (walk_volatility <= 0 or walk_interval <= 0):
        raise ValueError("--walk and --walk-interval must be positive")
    if funding_interval is not None and funding_interval <= 0:
        raise ValueError("--funding-interval must be positive")
    public_keys: dict[str, str] = {}
    for flag in ("ed25519_public_key", "rsa_public_key"):
        path = getattr(args, flag, None)
        if path is not None:
            try:
                public_keys[args.api_key] = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise ValueError(f"--{flag.replace('_', '-')} {path}: {exc.strerror}") from None
    return SimConfig(
        api_key=args.api_key,
        api_secret=args.api_secret,
        public_keys=public_keys,
        latency_ms=args.latency_ms,
        rate_limits=not args.no_rate_limits,
        state_path=getattr(args, "state", None),
        slippage_bps=getattr(args, "slippage_bps", Decimal(0)),
        book=book,
        walk=WalkConfig(
            volatility=walk_volatility, interval_s=walk_interval, seed=getattr(args, "walk_seed", 0)
        ),
        funding=FundingConfig(
            interval_ms=None if funding_interval is None else max(1, round(funding_interval * 1000)),
            auto=not getattr(args, "no_funding", False),
            default_rate=getattr(args, "funding_rate", DEFAULT_FUNDING_RATE),
            premium=getattr(args, "funding_premium", False),
        ),
        liquidation=not getattr(args, "no_liquidation", False),
    )
