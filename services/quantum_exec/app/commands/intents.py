"""``quantum-exec submit | results | schema``: publish an intent, read the results, print the schemas."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from quantum_exec.app.commands.common import add_settings_args, redis_errors, redis_url, run, settings_from
from quantum_exec.core.errors import ConfigError
from quantum_exec.core.settings import Settings


def _decimal_arg(value: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a decimal number: {value!r}") from None
    if not number.is_finite():
        raise argparse.ArgumentTypeError(f"not a finite number: {value!r}")
    return number


def _positive_int(value: str) -> int:
    if not value.strip().isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of at least 1: {value!r}")
    return int(value)


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
        try:
            raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
        except OSError as exc:
            raise ConfigError(f"--file {args.file}: {exc.strerror or exc}") from None
        try:
            loaded = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"--file {args.file}: not JSON ({exc})") from None
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
    from quantum_exec.core.errors import IntentRejected

    try:
        parse_intent(payload)
    except IntentRejected as exc:
        raise ConfigError(f"not submitted: {exc.code}: {exc.message}") from None
    return payload


async def _submit(settings: Settings, payload: dict[str, Any], *, check: bool) -> str:
    from quantum_exec.app.commands.precheck import check_intent_id, check_on_exchange
    from quantum_exec.contracts import encode_intent_fields, parse_intent
    from quantum_exec.core.redis_client import connect

    intent = parse_intent(payload)  # build_intent refused what does not parse
    url = redis_url(settings)
    client = connect(settings, url)
    try:
        async with redis_errors(settings, url):
            await client.ping()  # Redis first: when it is down, that is the one line to say
            if check:
                await check_intent_id(client, settings, intent)
                await check_on_exchange(settings, intent)
            fields: Any = encode_intent_fields(payload, "quantum-exec-cli")
            stream_id = await client.xadd(settings.intent_stream, fields)
    finally:
        await client.aclose()
    return stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)


def cmd_submit(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    payload = build_intent(args)
    stream_id = run(_submit(settings, payload, check=not args.no_check))
    sys.stdout.write(f"{stream_id}\n")
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from quantum_exec.app.results_view import show_intent, show_results

    settings = settings_from(args)
    url = redis_url(settings)

    async def show() -> int:
        async with redis_errors(settings, url):
            if args.intent is not None:
                return await show_intent(settings, url, args.intent, as_json=args.json)
            return await show_results(settings, url, count=args.count, follow=args.follow, as_json=args.json)

    return int(run(show()))


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


def add_commands(sub: Any) -> None:
    """Register submit, results and schema."""
    p = sub.add_parser(
        "submit",
        help="publish one intent",
        description="Publish a TradeIntent on the intent stream and print its stream id. "
        "Example: quantum-exec submit --symbol BTCUSDT --side BUY --size-usd 500 --leverage 3 "
        "--sl-pct 1.5 --tp-pct 3",
    )
    add_settings_args(p)
    p.add_argument(
        "--file", metavar="PATH", help="intent JSON file ('-' for stdin); flags override its fields"
    )
    p.add_argument("--intent-id", help="idempotency key (default: the stream id)")
    p.add_argument("--symbol", help="e.g. BTCUSDT")
    p.add_argument(
        "--side",
        type=str.upper,
        choices=["BUY", "SELL", "CLOSE", "MODIFY"],
        help="BUY, SELL, CLOSE, or MODIFY (change the open position's SL/TP/trailing stop/break-even)",
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
    p.add_argument(
        "--no-check",
        action="store_true",
        help="publish without the service's checks first (freshness, symbol, size, SL/TP side, "
        "a re-used intent_id)",
    )
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("results", help="show recent results", description="Show ExecutionResults.")
    add_settings_args(p)
    p.add_argument(
        "-n", "--count", type=_positive_int, default=20, help="how many recent results (default 20)"
    )
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new results")
    p.add_argument(
        "--intent",
        metavar="ID",
        help="the one intent's result (or its dead letter, or that it is still working)",
    )
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(func=cmd_results)

    p = sub.add_parser("schema", help="print JSON Schemas", description="JSON Schemas of the payloads.")
    p.add_argument("which", nargs="?", choices=["intent", "result", "position", "all"], default="all")
    p.set_defaults(func=cmd_schema)
