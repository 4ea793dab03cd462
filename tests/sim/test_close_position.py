"""-4130: one closePosition stop and one closePosition take-profit per side of a symbol."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from binance_sim.engine import Engine
from binance_sim.params import Params

from .test_engine import algo, code_of, order

pytestmark = pytest.mark.timeout(30)

EngineFactory = Callable[..., Engine]


def _close(engine: Engine, side: str, order_type: str, trigger: str, **extra: str) -> dict:
    return algo(engine, side=side, type=order_type, triggerPrice=trigger, closePosition="true", **extra)


def test_a_second_close_position_stop_on_one_side_is_refused_until_the_first_is_gone(
    engine_factory: EngineFactory,
) -> None:
    engine = engine_factory()
    order(engine, side="BUY", quantity="0.010")
    first = _close(engine, "SELL", "STOP_MARKET", "94000")
    _close(engine, "SELL", "TAKE_PROFIT_MARKET", "97000")  # a stop and a target rest together
    # The same kind again, at another trigger: Binance refuses it, whatever its trigger.
    assert code_of(lambda: _close(engine, "SELL", "STOP_MARKET", "93000")) == -4130
    assert code_of(lambda: _close(engine, "SELL", "TAKE_PROFIT_MARKET", "98000")) == -4130
    # Quantity legs and the other direction are not closePosition orders of this side.
    algo(engine, side="SELL", type="STOP_MARKET", triggerPrice="93000", quantity="0.010", reduceOnly="true")
    _close(engine, "BUY", "STOP_MARKET", "96000")
    engine.cancel_algo_order(Params({"algoId": str(first["algoId"])}))
    replaced = _close(engine, "SELL", "STOP_MARKET", "93500")
    assert replaced["algoStatus"] == "NEW"


def test_hedge_mode_counts_each_position_side_apart(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    engine.change_position_mode(Params({"dualSidePosition": "true"}))
    order(engine, side="BUY", positionSide="LONG", quantity="0.010")
    order(engine, side="SELL", positionSide="SHORT", quantity="0.010")
    _close(engine, "SELL", "STOP_MARKET", "94000", positionSide="LONG")
    _close(engine, "BUY", "STOP_MARKET", "96000", positionSide="SHORT")
    assert code_of(lambda: _close(engine, "SELL", "STOP_MARKET", "93000", positionSide="LONG")) == -4130
