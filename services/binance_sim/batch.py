"""Several orders in one request, and the dead man's switch.

``POST /fapi/v1/batchOrders`` / ``PUT /fapi/v1/batchOrders`` ("Place Multiple Orders", "Modify
Multiple Orders"): ``batchOrders`` is a JSON list of at most 5 orders; each is placed (modified) on
its own and the answer lists, in order, each order's JSON or its ``{"code", "msg"}`` error.

``POST /fapi/v1/countdownCancelAll`` ("Auto-Cancel All Open Orders"): ``countdownTime`` ms from now
every open order of ``symbol`` is canceled unless the countdown is renewed; 0 switches it off. The
docs name open orders only; conditional orders live in the algo service since 2025-12 and are not
touched here (our choice, the stricter for a client: it must cancel its algo orders itself).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from binance_sim import errors
from binance_sim.errors import SimError
from binance_sim.ledger import Ledger
from binance_sim.model import JSON
from binance_sim.params import Params

MAX_BATCH: Final = 5


def run_batch(params: Params, handler: Callable[[Params], JSON]) -> list[JSON]:
    """Each order of ``batchOrders`` through ``handler``; errors take that order's place."""
    raw = params.req_str("batchOrders")
    try:
        items: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.invalid_value("batchOrders") from None
    if (
        not isinstance(items, list)
        or not 1 <= len(items) <= MAX_BATCH
        or not all(isinstance(i, dict) for i in items)
    ):
        raise errors.invalid_value("batchOrders")
    answers: list[JSON] = []
    for item in items:
        one = Params({str(k): _text(v) for k, v in item.items()})
        try:
            answers.append(handler(one))
        except SimError as exc:
            answers.append({"code": exc.code, "msg": exc.msg})
    return answers


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Countdowns:
    """The auto-cancel countdown of each symbol (``cancel_all`` cancels a symbol's open orders)."""

    def __init__(self, ledger: Ledger, cancel_all: Callable[[Params], JSON]) -> None:
        self.ledger = ledger
        self.cancel_all = cancel_all
        self.deadlines: dict[str, int] = {}

    def set(self, params: Params) -> JSON:
        """POST /fapi/v1/countdownCancelAll."""
        spec = self.ledger.spec(params.req_str("symbol"))
        countdown = params.req_int("countdownTime")
        if countdown < 0:
            raise errors.invalid_value("countdownTime")
        if countdown:
            self.deadlines[spec.symbol] = self.ledger.clock() + countdown
        else:
            self.deadlines.pop(spec.symbol, None)
        return {"symbol": spec.symbol, "countdownTime": str(countdown)}

    def fire_due(self) -> None:
        """Cancel the open orders of every symbol whose countdown ran out."""
        now = self.ledger.clock()
        for symbol in [s for s, due in self.deadlines.items() if due <= now]:
            del self.deadlines[symbol]
            self.cancel_all(Params({"symbol": symbol}))
