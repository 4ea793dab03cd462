"""``quantum-exec halt | reduce | resume | limits``: the control API of a running service.

Found like ``check`` finds it (``QUANTUM_METRICS_PORT``, else the port an embedded ``serve``
recorded, else 9108); ``QUANTUM_API_TOKEN`` is required (the control API is off without it).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import aiohttp

from quantum_exec.app.commands.common import add_settings_args, with_reader_settings
from quantum_exec.core.errors import ConfigError
from quantum_exec.core.rules import fmt
from quantum_exec.core.settings import Settings
from quantum_exec.ops.health import local_url
from quantum_exec.risk.admissions import DRAIN_DEADLINE_S

# A HALT or REDUCING answers once the entries admitted before it settled (at most this long).
TIMEOUT_S = DRAIN_DEADLINE_S + 10.0


async def _call(settings: Settings, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
    if settings.api_token is None:
        raise ConfigError("the control API needs QUANTUM_API_TOKEN (the service's token) in this environment")
    headers = {"Authorization": f"Bearer {settings.api_token.get_secret_value()}"}
    try:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(method, local_url(settings) + path, json=body, headers=headers) as response,
        ):
            return response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConfigError(
            f"no quantum-exec service answers at {local_url(settings)} ({type(exc).__name__}); "
            "start `quantum-exec serve` or set QUANTUM_METRICS_PORT"
        ) from None


def call(settings: Settings, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The control API's answer; ConfigError with its message for anything but 200."""
    status, raw = asyncio.run(_call(settings, method, path, body))
    try:
        parsed = json.loads(raw, parse_float=Decimal)
    except ValueError:
        raise ConfigError(f"{path} answered {status} with a body that is not JSON") from None
    if status != 200:
        message = parsed.get("error", {}).get("message") if isinstance(parsed, dict) else None
        raise ConfigError(f"{path} answered {status}: {message or raw.decode(errors='replace')}")
    return dict(parsed)


def format_control(body: dict[str, Any]) -> str:
    state = body["state"]
    lines = [f"trading: {state['state']}" + (f" since {state['since']}" if state.get("since") else "")]
    if state.get("reason"):
        lines.append(f"  reason: {state['reason']} (by {state.get('by') or '-'})")
    if state.get("flatten"):
        lines.append(f"  flatten under way: {state['flatten']}")
    if state.get("locked_day"):
        lines.append(
            f"  daily-loss halt of {state['locked_day']}: resume needs --force until the next UTC day"
        )
    lines.append("limits:")
    for name, value in body["limits"].items():
        shown = "off" if value is None else fmt(value) if isinstance(value, Decimal) else str(value)
        lines.append(f"  {name:<26} {shown}")
    return "\n".join(lines)


def _show(args: argparse.Namespace, body: dict[str, Any]) -> int:
    sys.stdout.write((json.dumps(body, default=str) if args.json else format_control(body)) + "\n")
    return 0


def _who() -> str:
    try:
        return getpass.getuser()[:64]
    except (OSError, KeyError):
        return "cli"


def _state(to: str) -> Callable[[argparse.Namespace, Settings], int]:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        body: dict[str, Any] = {
            "state": to,
            "who": _who(),
            "reason": args.reason or f"quantum-exec {args.command}",
        }
        if getattr(args, "flatten", False):
            body["flatten"] = True
        if getattr(args, "force", False):
            body["force"] = True
        return _show(args, call(settings, "POST", "/api/control/state", body))

    return run


def cmd_limits(args: argparse.Namespace, settings: Settings) -> int:
    if not args.set:
        return _show(args, call(settings, "GET", "/api/control"))
    body: dict[str, Any] = {"who": _who()}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: KEY=VALUE, e.g. max_gross_notional_usd=1000 (off, default)")
        body[key.strip()] = value.strip()
    return _show(args, call(settings, "POST", "/api/control/limits", body))


def add_commands(sub: Any) -> None:
    """Register ``halt``, ``reduce``, ``resume`` and ``limits`` on the CLI's subparsers."""
    for name, to, helptext in (
        ("halt", "HALTED", "stop trading: nothing new is sent, working entries end, legs stay"),
        ("reduce", "REDUCING", "only intents that reduce exposure are executed"),
        ("resume", "ACTIVE", "trade again"),
    ):
        p = sub.add_parser(name, help=helptext, description=__doc__)
        add_settings_args(p)
        p.add_argument("--reason", help="why (published on the risk event stream)")
        if name == "halt":
            p.add_argument("--flatten", action="store_true", help="and close every position at market")
        if name == "resume":
            p.add_argument("--force", action="store_true", help="out of the governor's daily-loss halt")
        p.add_argument("--json", action="store_true", help="the API's JSON body")
        p.set_defaults(func=with_reader_settings(_state(to)), command=name)
    p = sub.add_parser("limits", help="show or change the risk limits", description=__doc__)
    add_settings_args(p)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="a limit (repeat); off, or default")
    p.add_argument("--json", action="store_true", help="the API's JSON body")
    p.set_defaults(func=with_reader_settings(cmd_limits))
