"""The simulator's TRAILING_STOP_MARKET (binance_sim/trailing.py): callbackRate 0.1-20, activation
at activatePrice announced by ALGO_UPDATE ``ia``, tracking the extreme, firing at the callback."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from binance_sim.engine import Engine
from binance_sim.errors import SimError
from binance_sim.params import Params

pytestmark = pytest.mark.timeout(30)

EngineFactory = Callable[..., Engine]
D = Decimal


class Recorder:
    """A user stream that keeps what it is given."""

    active = True

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def publish(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def algo_updates(self) -> list[dict[str, Any]]:
        return [e["o"] for e in self.events if e["e"] == "ALGO_UPDATE"]


def trailing(engine: Engine, **fields: str) -> dict[str, Any]:
    body: dict[str, Any] = engine.new_algo_order(
        Params(
            {
                "symbol": "BTCUSDT",
                "algoType": "CONDITIONAL",
                "side": "SELL",
                "type": "TRAILING_STOP_MARKET",
                "quantity": "0.010",
                "reduceOnly": "true",
                "workingType": "MARK_PRICE",
                **fields,
            }
        )
    )
    return body


def long_position(engine: Engine) -> None:
    engine.new_order(Params({"symbol": "BTCUSDT", "type": "MARKET", "side": "BUY", "quantity": "0.010"}))


def amount(engine: Engine) -> Decimal:
    pos = engine.positions.get(("BTCUSDT", "BOTH"))
    return pos.amount if pos else D(0)


def test_callback_rate_is_0_1_to_20(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    long_position(engine)
    for rate in ("0.05", "20.1"):
        with pytest.raises(SimError) as info:
            trailing(engine, callbackRate=rate)
        assert info.value.code == -2007
    assert trailing(engine, callbackRate="20")["algoStatus"] == "NEW"  # 10 was the maximum before 2026-10-23


def test_activates_at_its_price_announces_ia_follows_the_high_and_fires_at_the_callback(
    engine_factory: EngineFactory,
) -> None:
    engine = engine_factory()
    stream = Recorder()
    engine.stream = stream  # type: ignore[assignment]
    long_position(engine)
    mark = engine.mark("BTCUSDT")
    activation = (mark * D("1.01")).quantize(D("0.1"))
    with pytest.raises(SimError) as info:
        trailing(engine, callbackRate="1", activatePrice=str((mark * D("0.99")).quantize(D("0.1"))))
    assert info.value.code == -2021  # a SELL's activation below the mark would activate at once
    placed = trailing(engine, callbackRate="1", activatePrice=str(activation))
    assert [(u["X"], u["ia"]) for u in stream.algo_updates()] == [("NEW", False)]
    engine.set_mark_price("BTCUSDT", activation - D(10))
    assert [u["ia"] for u in stream.algo_updates()] == [False]  # not reached: not active, no event
    engine.set_mark_price("BTCUSDT", activation)
    assert [(u["X"], u["ia"]) for u in stream.algo_updates()] == [("NEW", False), ("NEW", True)]
    high = activation + D(2000)
    engine.set_mark_price("BTCUSDT", high)
    engine.set_mark_price("BTCUSDT", (high * D("0.9905")).quantize(D("0.1")))  # 0.95 % down: holds
    assert amount(engine) == D("0.010")
    engine.set_mark_price("BTCUSDT", (high * D("0.99")).quantize(D("0.1")))  # 1 % below the high
    assert amount(engine) == 0
    final = [u for u in stream.algo_updates() if u["aid"] == placed["algoId"]][-1]
    assert final["X"] == "FINISHED" and final["ia"] is True
    assert D(final["tp"]) == (high * D("0.99")).quantize(D("0.1"))


def test_without_an_activation_price_it_is_active_at_once(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    stream = Recorder()
    engine.stream = stream  # type: ignore[assignment]
    long_position(engine)
    trailing(engine, callbackRate="0.5")
    assert [(u["X"], u["ia"]) for u in stream.algo_updates()] == [("NEW", True)]
