"""``quantum-exec demo``: the whole path on embedded defaults, in well under 30 seconds.

Starts a private Redis and the simulator, runs the service, publishes a long, a short, one intent
too small for the symbol's minimum notional and a CLOSE, prints the results as a table, then
moves the mark price through the long's stop to show the exchange-side protection firing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from quantum_exec.app.results_view import format_table
from quantum_exec.contracts import (
    ExecutionResult,
    ProtectionState,
    ResultStatus,
    decode_result_fields,
    encode_intent_fields,
)
from quantum_exec.core.settings import LogFormat, Settings

RESULT_DEADLINE_S = 20.0


@dataclass(frozen=True)
class Scenario:
    """One sample intent and what it must come back as."""

    label: str
    payload: dict[str, Any]
    status: ResultStatus
    protection: ProtectionState | None = None
    code: str | None = None


def scenarios(run_id: str) -> list[Scenario]:
    """Sample intents in the producers' own format (floats, extra fields echoed in meta)."""
    return [
        Scenario(
            "long BTCUSDT, 2% stop, 4% target",
            {
                "intent_id": f"demo-{run_id}-long",
                "symbol": "BTCUSDT",
                "side": "BUY",
                "position_size_usd": 2000.0,
                "leverage": 5,
                "stop_loss_pct": 2,
                "take_profit_pct": 4,
                "model": "demo",
                "confidence": 0.8,
            },
            ResultStatus.FILLED,
            ProtectionState.PROTECTED,
        ),
        Scenario(
            "short ETHUSDT, 1.5% stop, 3% target",
            {
                "intent_id": f"demo-{run_id}-short",
                "symbol": "ethusdt",
                "action": "sell",
                "position_size_usd": 1500.0,
                "leverage": 3,
                "stop_loss_pct": 1.5,
                "take_profit_pct": 3,
                "model": "demo",
            },
            ResultStatus.FILLED,
            ProtectionState.PROTECTED,
        ),
        Scenario(
            "BTCUSDT for $99: 0.001 BTC is below the 100 USDT minimum notional",
            {
                "intent_id": f"demo-{run_id}-small",
                "symbol": "BTCUSDT",
                "side": "BUY",
                "position_size_usd": 99.0,
            },
            ResultStatus.REJECTED,
            code="NOTIONAL_BELOW_MIN",
        ),
        Scenario(
            "close the ETHUSDT short",
            {"intent_id": f"demo-{run_id}-close", "symbol": "ETHUSDT", "side": "CLOSE"},
            ResultStatus.FILLED,
        ),
    ]


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def _collect(service: Any, settings: Settings, wanted: set[str]) -> dict[str, ExecutionResult]:
    found: dict[str, ExecutionResult] = {}
    last_id = "0"
    deadline = time.monotonic() + RESULT_DEADLINE_S
    while wanted - found.keys() and time.monotonic() < deadline:
        reply = await service.redis.xread({settings.result_stream: last_id}, block=500, count=100)
        for _stream, entries in reply or []:
            for stream_id, fields in entries:
                last_id = stream_id
                result = decode_result_fields(fields)
                if result.intent_id in wanted:
                    found[result.intent_id] = result
    return found


def _verdict(items: list[Scenario], results: dict[str, ExecutionResult]) -> list[str]:
    problems = []
    for item in items:
        key = item.payload["intent_id"]
        result = results.get(key)
        if result is None:
            problems.append(f"{item.label}: no result within {RESULT_DEADLINE_S:g}s")
            continue
        if result.status is not item.status:
            problems.append(f"{item.label}: status {result.status.value}, expected {item.status.value}")
        if item.protection is not None and result.protection is not item.protection:
            problems.append(
                f"{item.label}: protection {result.protection.value}, expected {item.protection.value}"
            )
        if item.code is not None and (result.error is None or result.error.code != item.code):
            problems.append(f"{item.label}: error {result.error}, expected code {item.code}")
    return problems


async def run_demo(settings: Settings, *, verbose: bool = False) -> int:
    """Run the demo; 0 when every sample intent came back as expected."""
    from quantum_exec.app.service import Service
    from quantum_exec.ops.logs import secret_values, setup_logging

    setup_logging(settings.model_copy(update={"log_format": LogFormat.TEXT}), secrets=secret_values(settings))
    if not verbose:
        logging.getLogger().setLevel(logging.WARNING)
    started = time.monotonic()
    service = Service(settings)
    await service.start()
    try:
        _out(f"private Redis: {service.redis_url}")
        _out(
            f"exchange simulator: {service.exchange_url}  (metrics: http://127.0.0.1:{service.metrics_port}/metrics)"
        )
        run_id = str(int(time.time()))
        items = scenarios(run_id)
        _out("\npublishing:")
        for item in items:
            fields: Any = encode_intent_fields(item.payload, "demo")
            stream_id = await service.redis.xadd(settings.intent_stream, fields)
            _out(f"  {stream_id.decode() if isinstance(stream_id, bytes) else stream_id}  {item.label}")
        results = await _collect(service, settings, {i.payload["intent_id"] for i in items})
        _out("\nresults:")
        _out(
            format_table(results[i.payload["intent_id"]] for i in items if i.payload["intent_id"] in results)
        )
        stop_problems: list[str] = []
        long_result = results.get(items[0].payload["intent_id"])
        if long_result is not None and long_result.stop_loss and long_result.stop_loss.trigger_price:
            stop_problems = await _show_stop(service, long_result)
            stop_problems += await _show_book(service, expected=2)
        problems = _verdict(items, results) + stop_problems
    finally:
        await service.stop()
    elapsed = time.monotonic() - started
    if problems:
        _out("\ndemo FAILED:")
        for problem in problems:
            _out(f"  - {problem}")
        return 1
    _out(f"\ndemo OK in {elapsed:.1f}s: every intent got exactly one result.")
    return 0


async def _show_stop(service: Any, result: ExecutionResult) -> list[str]:
    """Move the mark through the long's stop: the simulator fires it, the live OCO cancels the target."""
    sim = service.simulator
    if sim is None or result.stop_loss is None or result.stop_loss.trigger_price is None:
        return []
    below = result.stop_loss.trigger_price * Decimal("0.999")
    moved_at = time.monotonic()
    sim.set_mark_price(result.symbol, below)
    target_id = result.take_profit.client_algo_id if result.take_profit else None
    event = await _stop_event(service, result.symbol, result.intent_id)
    for _ in range(1000):  # the live OCO cancels the target within one round trip; 5 s at most
        if service.account is None or _algo_status(sim, target_id) != "NEW":
            break
        await asyncio.sleep(0.005)
    cancelled_ms = (time.monotonic() - moved_at) * 1000
    state = sim.state()
    amount = sum(
        (
            Decimal(str(p.get("positionAmt", "0")))
            for p in state.get("positions", [])
            if p.get("symbol") == result.symbol
        ),
        Decimal(0),
    )
    target = next((a for a in state.get("algoOrders", []) if a.get("clientAlgoId") == target_id), None)
    target_state = target.get("algoStatus") if target else "absent"
    _out(
        f"\nmark {result.symbol} moved to {below.normalize()}: stop {result.stop_loss.trigger_price} fired, "
        f"position now {amount.normalize()}; target {target_state}"
    )
    if event is None:
        return [] if service.account is None else ["no position event for the stop within the deadline"]
    _out(
        f"position event: {event['kind']} {event['reason']} at {event['price']}, realized_pnl "
        f"{event['realized_pnl']}, commission {event['commission']} {event['commission_asset']} "
        f"(target cancelled and event published {cancelled_ms:.0f} ms after the mark moved)"
    )
    return [] if target_state == "CANCELED" else [f"the target of the stopped long is {target_state}"]


async def _show_book(service: Any, *, expected: int) -> list[str]:
    """The ledger's summary of the round trips the demo closed (the short's CLOSE, the long's stop)."""
    from quantum_exec.ledger.query import TradeQuery
    from quantum_exec.ledger.summary import summarize
    from quantum_exec.ledger.view import format_summary, format_trades

    book = service.book
    if book is None:
        return []
    trades: list[Any] = []
    for _ in range(500):  # the book follows the position events within milliseconds; 5 s at most
        trades = await book.closed_trades(TradeQuery())
        if len(trades) >= expected:
            break
        await asyncio.sleep(0.01)
    _out("\ntrades (quantum-exec trades):")
    _out(format_trades(trades))
    _out("\nsummary (quantum-exec summary):")
    _out(format_summary(summarize(trades)))
    return [] if len(trades) >= expected else [f"the ledger closed {len(trades)} of {expected} round trips"]


def _algo_status(sim: Any, client_algo_id: str | None) -> str:
    found = [a for a in sim.state().get("algoOrders", []) if a.get("clientAlgoId") == client_algo_id]
    return str(found[0].get("algoStatus")) if found else "absent"


async def _stop_event(service: Any, symbol: str, intent_id: str | None) -> dict[str, Any] | None:
    """The ``closed`` position event of the stop, read from the position stream (None after 5 s)."""
    if service.account is None:
        return None
    stream = service.settings.position_stream
    deadline = time.monotonic() + 5.0
    last_id = "0"
    while time.monotonic() < deadline:
        reply = await service.redis.xread({stream: last_id}, block=200, count=100)
        for _, entries in reply or []:
            for entry_id, fields in entries:
                last_id = entry_id
                event = json.loads(fields[b"payload"], parse_float=Decimal)
                if event["symbol"] == symbol and event["reason"] == "stop_loss" and event["kind"] == "closed":
                    return dict(event)
    return None
