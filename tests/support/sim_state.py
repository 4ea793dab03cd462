"""Reading the simulator's state in tests, and building intents as producers send them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from binance_sim import Simulator
from quantum_exec.contracts import TradeIntent, parse_intent


def intent(**payload: Any) -> TradeIntent:
    """A TradeIntent as a producer would send it (floats and all)."""
    return parse_intent(payload)


def orders(sim: Simulator, *, symbol: str | None = None, type_: str | None = None) -> list[dict[str, Any]]:
    return [
        o
        for o in sim.state()["orders"]
        if (symbol is None or o["symbol"] == symbol) and (type_ is None or o["type"] == type_)
    ]


def algo_orders(
    sim: Simulator, *, symbol: str | None = None, status: str | None = None
) -> list[dict[str, Any]]:
    return [
        a
        for a in sim.state()["algoOrders"]
        if (symbol is None or a["symbol"] == symbol) and (status is None or a["algoStatus"] == status)
    ]


def position_amount(sim: Simulator, symbol: str) -> Decimal:
    return sum(
        (Decimal(p["positionAmt"]) for p in sim.state()["positions"] if p["symbol"] == symbol), Decimal(0)
    )


def mark(sim: Simulator, symbol: str) -> Decimal:
    return Decimal(sim.state()["markPrices"][symbol])
