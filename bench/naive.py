"""The naive baseline: an executor as many bots write it. ``python -m bench.naive <config.json>``.

One intent at a time from the same Redis stream, with python-binance's synchronous ``Client``:
set leverage, MARKET entry, then STOP_MARKET, then TAKE_PROFIT_MARKET, each waiting for the
previous reply; a CLOSE cancels the symbol's conditional orders and sends a reduce-only MARKET
for the quantity the bot remembers. No idempotency records, no ordering or leases, no result
schema beyond a small JSON; so it is cheaper per intent in CPU than the service, and slower in
wall time wherever the exchange round trip matters.

The ``Client`` constructor pings the *spot* API unless ``ping=False`` (python-binance 1.0.37:
``Client.__init__(..., ping=True)`` calls ``self.ping()``), so it is built with ``ping=False`` and
``FUTURES_URL`` pointed at the simulator. Prints ``READY``; exits after ``count`` intents and
writes ``[stream_id, start, protected, end, ok]`` per intent to ``out``.
"""

from __future__ import annotations

import sys
import time
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import orjson
import redis
from binance.client import Client

RESULT_STREAM = "quantum:stream:execution.result"
INTENT_STREAM = "quantum:stream:trade.intent"


class NaiveExecutor:
    """Sequential set-leverage -> market -> stop -> take-profit (a CLOSE: cancel all -> market)."""

    def __init__(self, base_url: str, key: str, secret: str) -> None:
        self.client = Client(key, secret, ping=False)
        self.client.FUTURES_URL = base_url.rstrip("/") + "/fapi"
        info = self.client.futures_exchange_info()
        self.precision = {s["symbol"]: (s["quantityPrecision"], s["pricePrecision"]) for s in info["symbols"]}
        self.positions: dict[str, tuple[str, str]] = {}

    def execute(self, intent: dict[str, Any]) -> tuple[float, bool]:
        """Run one intent; returns (time both protective orders were acknowledged or 0, ok)."""
        symbol, side = intent["symbol"], intent["side"]
        c = self.client
        if side == "CLOSE":
            c.futures_cancel_all_algo_open_orders(symbol=symbol)
            held = self.positions.pop(symbol, None)
            if held is not None:
                exit_side, qty = held
                c.futures_create_order(
                    symbol=symbol, side=exit_side, type="MARKET", quantity=qty, reduceOnly="true"
                )
            return 0.0, True
        qty_places, price_places = self.precision[symbol]
        entry = Decimal(str(intent["entry_price"]))
        qty = (Decimal(str(intent["position_size_usd"])) / entry).quantize(
            Decimal(1).scaleb(-qty_places), ROUND_DOWN
        )
        long = side == "BUY"
        exit_side = "SELL" if long else "BUY"
        tick = Decimal(1).scaleb(-price_places)
        if "stop_loss" in intent:
            sl = Decimal(str(intent["stop_loss"])).quantize(tick)
            tp = Decimal(str(intent["take_profit"])).quantize(tick)
        else:
            sl = (entry * (1 - Decimal(intent["stop_loss_pct"]) / 100 * (1 if long else -1))).quantize(tick)
            tp = (entry * (1 + Decimal(intent["take_profit_pct"]) / 100 * (1 if long else -1))).quantize(tick)
        c.futures_change_leverage(symbol=symbol, leverage=intent["leverage"])
        c.futures_create_order(symbol=symbol, side=side, type="MARKET", quantity=str(qty))
        self.positions[symbol] = (exit_side, str(qty))
        for kind, trigger in (("STOP_MARKET", sl), ("TAKE_PROFIT_MARKET", tp)):
            c.futures_create_algo_order(
                algoType="CONDITIONAL",
                symbol=symbol,
                side=exit_side,
                type=kind,
                triggerPrice=str(trigger),
                closePosition="true",
                workingType="MARK_PRICE",
            )
        return time.time(), True


def main() -> None:
    config = orjson.loads(Path(sys.argv[1]).read_bytes())
    r = redis.Redis.from_url(config["redis_url"], protocol=2)
    bot = NaiveExecutor(config["sim_url"], config["api_key"], config["api_secret"])
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    records: list[list[Any]] = []
    last_id = "0-0"
    while len(records) < config["count"]:
        reply = r.xread({INTENT_STREAM: last_id}, count=1, block=1000)
        for _stream, entries in reply or []:
            for stream_id, fields in entries:
                last_id = stream_id.decode()
                intent = orjson.loads(fields[b"payload"])
                start = time.time()
                try:
                    protected, ok = bot.execute(intent)
                    error = ""
                except Exception as exc:  # a naive bot logs and moves on
                    protected, ok, error = 0.0, False, f"{type(exc).__name__}: {exc}"[:200]
                end = time.time()
                r.xadd(
                    RESULT_STREAM,
                    {
                        "payload": orjson.dumps(
                            {"intent_id": intent.get("intent_id"), "ok": ok, "error": error}
                        )
                    },
                )
                records.append([last_id, start, protected, end, ok])
    Path(config["out"]).write_bytes(orjson.dumps({"records": records}))


if __name__ == "__main__":
    main()
