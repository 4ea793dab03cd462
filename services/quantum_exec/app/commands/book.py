"""``quantum-exec positions | trades | summary``: the book of a running service, as tables or JSON.

They ask the service's read API (``/api/*`` on its metrics port), found like ``check`` finds it:
``QUANTUM_METRICS_PORT``, else the port an embedded ``serve`` recorded, else 9108; the bearer
token is ``QUANTUM_API_TOKEN`` when set. ``--json`` prints the API's body exactly as served.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from decimal import Decimal
from typing import Any

import aiohttp

from quantum_exec.app.commands.common import add_settings_args, with_reader_settings
from quantum_exec.core.errors import ConfigError
from quantum_exec.core.rules import fmt
from quantum_exec.core.settings import Settings
from quantum_exec.ops.health import local_url

TIMEOUT_S = 10.0


async def _get(settings: Settings, path: str, params: dict[str, str]) -> tuple[int, bytes]:
    headers = {}
    if settings.api_token is not None:
        headers["Authorization"] = f"Bearer {settings.api_token.get_secret_value()}"
    url = local_url(settings) + path
    try:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, params=params, headers=headers) as response,
        ):
            return response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConfigError(
            f"no quantum-exec service answers at {local_url(settings)} ({type(exc).__name__}); "
            "start `quantum-exec serve` or set QUANTUM_METRICS_PORT"
        ) from None


def fetch(settings: Settings, path: str, params: dict[str, str]) -> tuple[bytes, Any]:
    """The API's body (raw, and parsed with exact decimals); ConfigError for an error answer."""
    status, body = asyncio.run(_get(settings, path, params))
    try:
        parsed = json.loads(body, parse_float=Decimal)
    except ValueError:
        raise ConfigError(f"{path} answered {status} with a body that is not JSON") from None
    if status != 200:
        message = parsed.get("error", {}).get("message") if isinstance(parsed, dict) else None
        raise ConfigError(f"{path} answered {status}: {message or body.decode(errors='replace')}")
    return body, parsed


def _filters(args: argparse.Namespace, *, limit: bool) -> dict[str, str]:
    params = {
        k: str(getattr(args, k)) for k in ("symbol", "model", "since", "until") if getattr(args, k, None)
    }
    if limit and args.limit is not None:
        params["limit"] = str(args.limit)
    return params


def _num(value: Any) -> str:
    """Exact, without exponent or trailing zeros (0E-8 -> 0, 95234.50000000 -> 95234.5)."""
    if value is None:
        return "-"
    return fmt(value) if isinstance(value, Decimal) else str(value)


# A trailing stop's ``ia`` (None for a stop or a target: nothing shown).
_ACTIVATION: dict[bool | None, str] = {True: " active", False: " not active yet"}


def format_positions(body: dict[str, Any]) -> str:
    """Open positions and their protective orders, one block per symbol."""
    rows = body.get("positions", [])
    if not rows:
        return "no open positions"
    lines = [
        f"{'symbol':<10} {'side':<5} {'amount':>12} {'entry':>12} {'mark':>12} {'unrealized':>14}  protection"
    ]
    for p in rows:
        legs = ", ".join(
            f"{leg['type']} {leg['side']} {_num(leg['trigger_price'])} "
            f"{'x all (closePosition)' if leg.get('close_position') else 'x ' + _num(leg['quantity'])} "
            f"{leg['state']}"
            + (
                {True: " active", False: " not active yet"}.get(leg.get("activated"), "")
            )  # a trailing stop's ia
            for leg in p.get("protective_orders", [])
        )
        lines.append(
            f"{p['symbol']:<10} {p['side']:<5} {_num(p['position_amount']):>12} {_num(p['entry_price']):>12} "
            f"{_num(p['mark_price']):>12} {_num(p['unrealized_pnl']):>14}  {legs or 'NONE'}"
        )
    return "\n".join(lines)


def cmd_positions(args: argparse.Namespace, settings: Settings) -> int:
    raw, body = fetch(settings, "/api/positions", {})
    sys.stdout.write((raw.decode() if args.json else format_positions(body)) + "\n")
    return 0


def cmd_trades(args: argparse.Namespace, settings: Settings) -> int:
    from quantum_exec.ledger.trades import trade_from_json
    from quantum_exec.ledger.view import format_trades, trades_csv

    raw, body = fetch(settings, "/api/trades", _filters(args, limit=True))
    if args.json:
        sys.stdout.write(raw.decode() + "\n")
        return 0
    trades = [trade_from_json(t) for t in body["trades"]]
    sys.stdout.write(trades_csv(trades) if args.csv else format_trades(trades) + "\n")
    return 0


def cmd_summary(args: argparse.Namespace, settings: Settings) -> int:
    from quantum_exec.ledger.view import format_summary

    raw, body = fetch(settings, "/api/trades/summary", _filters(args, limit=False))
    sys.stdout.write((raw.decode() if args.json else format_summary(body)) + "\n")
    return 0


def add_commands(sub: Any) -> None:
    """Register the three commands on the CLI's subparsers."""
    p = sub.add_parser("positions", help="open positions and their SL/TP", description=__doc__)
    add_settings_args(p)
    p.add_argument("--json", action="store_true", help="the API's JSON body as served")
    p.set_defaults(func=with_reader_settings(cmd_positions))

    for name, helptext, handler, with_limit in (
        ("trades", "closed and open round trips, newest first", cmd_trades, True),
        ("summary", "PnL summary of the closed round trips", cmd_summary, False),
    ):
        p = sub.add_parser(name, help=helptext, description=__doc__)
        add_settings_args(p)
        p.add_argument("--symbol", help="only this symbol")
        p.add_argument("--model", help="only trades opened by this producer model")
        p.add_argument("--since", help="ISO-8601 date/time (UTC when naive) or epoch milliseconds")
        p.add_argument("--until", help="ISO-8601 date/time (UTC when naive) or epoch milliseconds")
        if with_limit:
            p.add_argument("--limit", type=int, help="at most this many (1-1000, default 100)")
            p.add_argument("--csv", action="store_true", help="CSV with exact decimals")
        p.add_argument("--json", action="store_true", help="the API's JSON body as served")
        p.set_defaults(func=with_reader_settings(handler))
