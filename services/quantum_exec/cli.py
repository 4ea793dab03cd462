"""``quantum-exec``: one entry point for the service, the simulator and the everyday tools."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from quantum_exec import __version__
from quantum_exec.errors import ConfigError, QuantumError
from quantum_exec.settings import (
    DEFAULT_ENV_FILE,
    ExchangeEnv,
    Settings,
    default_state_dir,
    load_settings,
    mask_url_password,
)

DESCRIPTION = """\
quantum-exec executes TradeIntents from a Redis stream on Binance USD-M futures: MARKET entry,
STOP_MARKET + TAKE_PROFIT_MARKET protection, one ExecutionResult per intent.

With nothing configured it runs on embedded defaults: a private redis-server and the local
exchange simulator. Try:  quantum-exec demo
"""

EPILOG = """\
commands:
  serve     run the service (what systemd and Docker start)
  demo      one-shot end-to-end run on the embedded defaults; prints the results
  sim       run the Binance futures simulator on its own
  submit    publish one intent (flags or a JSON file); prints its stream id
  results   show recent results (--follow to tail)
  check     health check: exit 0 when the running service is ready, 1 otherwise
  schema    print the JSON Schemas of TradeIntent, ExecutionResult and PositionEvent
  positions open positions with their SL/TP (the running service's /api/positions)
  trades    round trips with exact PnL (--symbol --model --since --limit --json --csv)
  summary   PnL summary: win rate, profit factor, drawdown, by symbol and model

Settings come from QUANTUM_* environment variables (and the --env-file); see
etc/quantum/execution.env.example. `quantum-exec serve --print-config` shows them.
"""


def _env_file_arg(value: str | None) -> Path | None:
    if value is not None:
        path = Path(value)
        if not path.is_file():
            raise ConfigError(f"--env-file {value}: no such file")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"--env-file {value}: not readable by this user")
        return path
    # Under systemd the unit's EnvironmentFile is already in the environment, and the file itself
    # (0600 root) is not readable by the service's user: the default is used only when readable.
    if DEFAULT_ENV_FILE.is_file() and os.access(DEFAULT_ENV_FILE, os.R_OK):
        return DEFAULT_ENV_FILE
    return None


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    if getattr(args, "log_format", None):
        overrides["log_format"] = args.log_format
    if getattr(args, "log_level", None):
        overrides["log_level"] = args.log_level
    return load_settings(_env_file_arg(getattr(args, "env_file", None)), **overrides)


def _add_settings_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env-file",
        metavar="PATH",
        help=f"EnvironmentFile with QUANTUM_* settings (default {DEFAULT_ENV_FILE} when present)",
    )


def _add_log_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", choices=["json", "text"], help="log line format (default json)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level")


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)


# -- serve / demo / check -------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings.embedded_redis and settings.state_dir is None:
        # A private Redis that keeps its data: a killed `serve` started again answers every intent.
        settings = settings.model_copy(update={"state_dir": default_state_dir()})
    if args.print_config:
        sys.stdout.write(orjson.dumps(settings.masked(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    from quantum_exec.ops.logs import get_logger, secret_values, setup_logging
    from quantum_exec.ops.secrets_check import check_secret_file_permissions
    from quantum_exec.runtime import clear_endpoints, runtime_dir, write_endpoints
    from quantum_exec.service import Service

    if settings.embedded_redis or settings.embedded_sim:
        runtime_dir()  # refuses a directory another user planted, before anything starts
    setup_logging(settings, secrets=secret_values(settings))
    log = get_logger("quantum_exec.cli")
    # A loose EnvironmentFile or private key: refused with real money, a warning elsewhere.
    check_secret_file_permissions(
        [_env_file_arg(args.env_file), settings.private_key_file],
        refuse=settings.exchange is ExchangeEnv.LIVE,
    )

    def on_ready() -> None:
        # Lets `submit`/`results` in another terminal find a private Redis without configuration.
        if settings.embedded_redis or settings.embedded_sim:
            path = write_endpoints(
                redis_url=service.redis_url,
                exchange_url=service.exchange_url,
                metrics_port=service.metrics_port,
            )
            log.info(
                "service.endpoints_recorded",
                path=str(path),
                redis_url=mask_url_password(service.redis_url or ""),
                exchange_url=service.exchange_url,
            )

    service = Service(settings, on_ready=on_ready)
    try:
        return int(_run(service.run_until_signal()))
    finally:
        clear_endpoints()


def cmd_demo(args: argparse.Namespace) -> int:
    from quantum_exec.demo import run_demo

    settings = _settings(args, redis_url=None, binance_base_url=None, exchange="sim", metrics_port=0)
    return int(_run(run_demo(settings, verbose=args.verbose)))


def _local_settings(args: argparse.Namespace) -> Settings:
    """Settings to ask the running service over HTTP: where its metrics port is, and the token.

    A client needs no exchange credentials: without them in its own environment it must still
    ask the service rather than fail. An embedded ``serve`` in another terminal records where it
    listens (as for submit/results); ``QUANTUM_METRICS_PORT`` wins.
    """
    from quantum_exec.runtime import read_endpoints

    try:
        settings = _settings(args)
    except ConfigError as refused:
        port = os.environ.get("QUANTUM_METRICS_PORT", "9108")
        try:
            settings = Settings(
                metrics_port=int(port) if port.isdigit() else 9108,
                api_token=os.environ.get("QUANTUM_API_TOKEN") or None,
            )
        except ValueError:  # the client's own settings are bad too (a short token): say why, once
            raise refused from None
    recorded = read_endpoints().get("metrics_port")
    if "QUANTUM_METRICS_PORT" not in os.environ and isinstance(recorded, int):
        settings = settings.model_copy(update={"metrics_port": recorded})
    return settings


def cmd_check(args: argparse.Namespace) -> int:
    from quantum_exec.ops.health import check

    settings = _local_settings(args)
    from quantum_exec.ops.logs import setup_logging
    from quantum_exec.settings import LogFormat

    setup_logging(settings.model_copy(update={"log_format": LogFormat.TEXT, "log_level": "WARNING"}))
    return 0 if _run(check(settings)) else 1


# -- sim --------------------------------------------------------------------------------------------


def cmd_sim(args: argparse.Namespace) -> int:
    import binance_sim

    try:
        config = binance_sim.config_from_args(args)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    binance_sim.serve_forever(config, host=args.host, port=args.port)
    return 0


# -- submit / results -------------------------------------------------------------------------------


def _redis_url(settings: Settings) -> str | None:
    """The URL of the Redis to use; None when Sentinel names it."""
    if settings.redis_url or settings.redis_sentinels:
        return settings.redis_url
    from quantum_exec.runtime import read_endpoints, runtime_file

    url = read_endpoints().get("redis_url")
    if not url:
        raise ConfigError(
            "QUANTUM_REDIS_URL is not set and no running `quantum-exec serve` with an embedded Redis "
            f"was found ({runtime_file()}); start `quantum-exec serve` or set QUANTUM_REDIS_URL"
        )
    return str(url)


def _decimal_arg(value: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal number: {value!r}") from None
    if not number.is_finite():
        raise argparse.ArgumentTypeError(f"not a finite number: {value!r}")
    return number


def _twap_arg(value: str) -> dict[str, Any]:
    """``SLICES:INTERVAL_S`` as the intent's ``execution`` object."""
    slices, sep, interval = value.partition(":")
    if not sep or not slices.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected SLICES:INTERVAL_S, e.g. 5:2 (got {value!r})")
    return {"algo": "twap", "slices": int(slices), "interval_s": str(_decimal_arg(interval))}


def _price_or_pct(value: str, price: str, pct: str) -> dict[str, str]:
    """``105.5`` as ``{price: "105.5"}``, ``2%`` as ``{pct: "2"}``."""
    text = value.strip()
    if text.endswith("%"):
        return {pct: str(_decimal_arg(text[:-1]))}
    return {price: str(_decimal_arg(text))}


def _ladder_arg(value: str) -> list[dict[str, str]]:
    """``TRIGGER:SIZE_PCT,...`` (a trigger is a price, or a percent with ``%``) as ``take_profits``."""
    levels: list[dict[str, str]] = []
    for part in value.split(","):
        trigger, sep, size = part.partition(":")
        if not sep:
            raise argparse.ArgumentTypeError(
                f"expected TRIGGER:SIZE_PCT[,...], e.g. 1%:40,2%:40,105:20 (got {value!r})"
            )
        levels.append({**_price_or_pct(trigger, "price", "pct"), "size_pct": str(_decimal_arg(size))})
    return levels


def _trailing_arg(value: str) -> dict[str, str]:
    """``CALLBACK_PCT[@ACTIVATION]`` (an activation price, or a percent with ``%``) as ``trailing_stop``."""
    rate, sep, activation = value.partition("@")
    spec = {"callback_pct": str(_decimal_arg(rate))}
    if sep:
        spec.update(_price_or_pct(activation, "activation_price", "activation_pct"))
    return spec


def build_intent(args: argparse.Namespace) -> dict[str, Any]:
    """The intent payload from ``submit``'s flags or JSON file (flags override the file)."""
    payload: dict[str, Any] = {}
    if args.file:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        loaded = orjson.loads(raw)
        if not isinstance(loaded, dict):
            raise ConfigError(f"{args.file}: the intent must be a JSON object")
        payload.update(loaded)
    flags = {
        "intent_id": args.intent_id,
        "symbol": args.symbol,
        "side": args.side,
        "position_size_usd": args.size_usd,
        "quantity": args.quantity,
        "entry_price": args.entry_price,
        "leverage": args.leverage,
        "margin_type": args.margin_type,
        "stop_loss": args.sl,
        "take_profit": args.tp,
        "stop_loss_pct": args.sl_pct,
        "take_profit_pct": args.tp_pct,
        "order_type": args.type,
        "price": args.price,
        "stop_price": getattr(args, "stop_price", None),
        "limit_offset_pct": args.limit_offset_pct,
        "time_in_force": args.tif,
        "expire_after_s": args.expire_after,
        "execution": getattr(args, "twap", None),
        "take_profits": getattr(args, "take_profits", None),
        "break_even_after": getattr(args, "break_even_after", None),
        "trailing_stop": getattr(args, "trailing", None),
        "close_pct": getattr(args, "close_pct", None),
    }
    payload.update({k: v for k, v in flags.items() if v is not None})
    if args.reduce_only:
        payload["reduce_only"] = True
    if getattr(args, "now", False):
        payload["timestamp"] = datetime.now(UTC).isoformat()  # a sample file older than the TTL
    payload.setdefault("timestamp", datetime.now(UTC).isoformat())
    for field in ("symbol", "side"):
        if field not in payload and not (field == "side" and "action" in payload):
            raise ConfigError(f"submit needs --{field} (or a JSON file with it)")
    # Refuse here, with the service's own message, what the service would only reject.
    from quantum_exec.contracts import parse_intent
    from quantum_exec.errors import IntentRejected

    try:
        parse_intent(payload)
    except IntentRejected as exc:
        raise ConfigError(f"not submitted: {exc.code}: {exc.message}") from None
    return payload


async def _submit(settings: Settings, payload: dict[str, Any]) -> str:
    from quantum_exec.contracts import encode_intent_fields
    from quantum_exec.redis_client import connect

    client = connect(settings, _redis_url(settings))
    try:
        fields: Any = encode_intent_fields(payload, "quantum-exec-cli")
        stream_id = await client.xadd(settings.intent_stream, fields)
    finally:
        await client.aclose()
    return stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)


def cmd_submit(args: argparse.Namespace) -> int:
    settings = _settings(args)
    payload = build_intent(args)
    stream_id = _run(_submit(settings, payload))
    sys.stdout.write(f"{stream_id}\n")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from quantum_exec.results_view import show_results

    settings = _settings(args)
    return int(
        _run(
            show_results(
                settings, _redis_url(settings), count=args.count, follow=args.follow, as_json=args.json
            )
        )
    )


# -- schema ----------------------------------------------------------------------------------------


def cmd_schema(args: argparse.Namespace) -> int:
    from quantum_exec.contracts import intent_json_schema, result_json_schema

    schemas: dict[str, Any] = {}
    if args.which in ("intent", "all"):
        schemas["TradeIntent"] = intent_json_schema()
    if args.which in ("result", "all"):
        schemas["ExecutionResult"] = result_json_schema()
    if args.which in ("position", "all"):
        from quantum_exec.account.positions import position_event_json_schema

        schemas["PositionEvent"] = position_event_json_schema()
    out = schemas if args.which == "all" else next(iter(schemas.values()))
    sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


# -- parser ----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantum-exec",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"quantum-exec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "serve", help="run the service", description="Consume intents, execute, publish results."
    )
    _add_settings_args(p)
    _add_log_args(p)
    p.add_argument(
        "--print-config", action="store_true", help="print the effective settings (secrets masked)"
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "demo",
        help="one-shot end-to-end run on embedded defaults",
        description="Start a private Redis, the simulator and the service; publish sample intents "
        "(long, short, one rejected for min notional, one CLOSE); print the results; exit.",
    )
    _add_settings_args(p)
    p.add_argument("--verbose", action="store_true", help="show the service's log lines")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "sim",
        help="run the exchange simulator",
        description="A local Binance USD-M futures REST API (paper trading, tests). Control it under /_sim/.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--api-key", default="quantum-sim-key", help="accepted API key (default quantum-sim-key)")
    p.add_argument(
        "--api-secret", default="quantum-sim-secret", help="accepted API secret (default quantum-sim-secret)"
    )
    p.add_argument(
        "--ed25519-public-key",
        type=Path,
        metavar="FILE",
        help="the API key signs with Ed25519: verify its requests against this public key (PEM)",
    )
    p.add_argument(
        "--rsa-public-key", type=Path, metavar="FILE", help="the API key signs with RSA: its public key (PEM)"
    )
    p.add_argument("--latency-ms", type=int, default=0, help="added to every response (default 0)")
    p.add_argument("--no-rate-limits", action="store_true", help="do not enforce Binance's rate limits")
    p.add_argument(
        "--slippage-bps", type=Decimal, default=Decimal(0), help="MARKET fills this far past the mark"
    )
    p.add_argument(
        "--depth",
        action="append",
        default=[],
        metavar="[SYMBOL=]USDT",
        help="USDT notional per book level (repeatable)",
    )
    p.add_argument("--spread-bps", type=Decimal, default=Decimal(0), help="bid-ask spread of the book")
    p.add_argument(
        "--level-bps", type=Decimal, default=Decimal(0), help="gap between book levels (0: one tick)"
    )
    p.add_argument(
        "--walk", type=Decimal, metavar="VOL", help="random-walk every mark, VOL per step (e.g. 0.001)"
    )
    p.add_argument(
        "--walk-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="time between walk steps (default 1)",
    )
    p.add_argument("--walk-seed", type=int, default=0, help="seed of the walk (the same seed, the same path)")
    p.add_argument("--funding-interval", type=float, default=28_800.0, metavar="SECONDS", help="default 8 h")
    p.add_argument("--funding-rate", type=Decimal, default=Decimal("0.0001"), help="default funding rate")
    p.add_argument("--no-funding", action="store_true", help="settle funding only on POST /_sim/funding")
    p.add_argument("--no-liquidation", action="store_true", help="never liquidate positions")
    p.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="keep the account in FILE across restarts (a paper account)",
    )
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser(
        "submit",
        help="publish one intent",
        description="Publish a TradeIntent on the intent stream and print its stream id. "
        "Example: quantum-exec submit --symbol BTCUSDT --side BUY --size-usd 500 --leverage 3 "
        "--sl-pct 1.5 --tp-pct 3",
    )
    _add_settings_args(p)
    p.add_argument(
        "--file", metavar="PATH", help="intent JSON file ('-' for stdin); flags override its fields"
    )
    p.add_argument("--intent-id", help="idempotency key (default: the stream id)")
    p.add_argument("--symbol", help="e.g. BTCUSDT")
    p.add_argument(
        "--side",
        type=str.upper,
        choices=["BUY", "SELL", "CLOSE", "MODIFY"],
        help="BUY, SELL, CLOSE, or MODIFY (change the open position's SL/TP/trailing stop)",
    )
    p.add_argument("--size-usd", type=_decimal_arg, help="notional in USDT")
    p.add_argument("--quantity", type=_decimal_arg, help="base quantity (wins over --size-usd)")
    p.add_argument("--entry-price", type=_decimal_arg, help="reference price for sizing (default: mark)")
    p.add_argument("--leverage", type=int, help="1..125")
    p.add_argument("--margin-type", type=str.upper, choices=["ISOLATED", "CROSSED"])
    p.add_argument("--sl", type=_decimal_arg, help="stop-loss trigger price")
    p.add_argument("--tp", type=_decimal_arg, help="take-profit trigger price")
    p.add_argument("--sl-pct", type=_decimal_arg, help="stop-loss distance from the fill, percent")
    p.add_argument("--tp-pct", type=_decimal_arg, help="take-profit distance from the fill, percent")
    p.add_argument("--reduce-only", action="store_true", help="the entry may only reduce a position")
    p.add_argument(
        "--type",
        type=str.upper,
        choices=["MARKET", "LIMIT", "STOP", "STOP_MARKET"],
        help="entry order type (MARKET)",
    )
    p.add_argument("--price", type=_decimal_arg, help="LIMIT (or STOP) price")
    p.add_argument("--stop-price", type=_decimal_arg, help="STOP / STOP_MARKET entry: the trigger price")
    p.add_argument(
        "--limit-offset-pct", type=_decimal_arg, help="LIMIT price this percent from the mark, passive"
    )
    p.add_argument("--tif", type=str.upper, choices=["GTC", "IOC", "FOK", "GTX"], help="LIMIT time in force")
    p.add_argument(
        "--expire-after", type=_decimal_arg, help="LIMIT: cancel the unfilled rest after S seconds"
    )
    p.add_argument(
        "--twap",
        type=_twap_arg,
        metavar="SLICES:INTERVAL_S",
        help="send the MARKET entry as SLICES orders INTERVAL_S seconds apart (e.g. 5:2)",
    )
    p.add_argument(
        "--take-profits",
        type=_ladder_arg,
        metavar="TRIGGER:SIZE_PCT,...",
        help="take-profit ladder, up to 5 levels; a trigger is a price or a percent from the entry "
        "(e.g. 1%%:40,2%%:40,105:20)",
    )
    p.add_argument(
        "--break-even-after", type=int, metavar="N", help="move the stop to break-even after TP level N"
    )
    p.add_argument(
        "--trailing",
        type=_trailing_arg,
        metavar="CALLBACK_PCT[@ACTIVATION]",
        help="native trailing stop: callback 0.1..20 %%, activation a price or a percent (e.g. 1@2%%)",
    )
    p.add_argument("--close-pct", type=_decimal_arg, help="CLOSE: close this percent of the position")
    p.add_argument(
        "--now", action="store_true", help="stamp the intent with the current time (a --file sample)"
    )
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("results", help="show recent results", description="Show ExecutionResults.")
    _add_settings_args(p)
    p.add_argument("-n", "--count", type=int, default=20, help="how many recent results (default 20)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new results")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser(
        "check",
        help="health check (exit 0 ready, 1 not)",
        description="Ask the local service's /readyz on QUANTUM_METRICS_PORT.",
    )
    _add_settings_args(p)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("schema", help="print JSON Schemas", description="JSON Schemas of the payloads.")
    p.add_argument("which", nargs="?", choices=["intent", "result", "position", "all"], default="all")
    p.set_defaults(func=cmd_schema)

    from quantum_exec.book_cli import add_commands

    add_commands(sub, _add_settings_args, _with_reader_settings)
    return parser


def _with_reader_settings(handler: Any) -> Any:
    """Run a read command with the settings it needs: where the API listens and its token."""

    def run(args: argparse.Namespace) -> int:
        return int(handler(args, _local_settings(args)))

    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``quantum-exec`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        sys.stderr.write(f"quantum-exec: {exc}\n")
        return 2
    except QuantumError as exc:
        sys.stderr.write(f"quantum-exec: {exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
