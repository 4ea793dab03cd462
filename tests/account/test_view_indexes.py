"""The account view's indexes answer what a scan of everything held would (own legs per symbol,
the count of open positions), through arming, triggers, finals, REST lookups and resyncs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from account.samples import algo_message, fill_message
from quantum_exec.account.events import parse_event
from quantum_exec.account.state import AccountState
from quantum_exec.core.ids import client_order_id, is_own_protective
from quantum_exec.exchange.wire import AlgoOrder, Position

SYMBOLS = ("BTCUSDT", "ETHUSDT")


def feed(state: AccountState, raw: dict[str, Any]) -> None:
    event = parse_event(raw)
    assert event is not None
    state.apply(event)


def scanned(state: AccountState, symbol: str) -> list[str]:
    """Our open protective orders on ``symbol`` found by scanning every open order."""
    return [
        a.client_algo_id
        for a in state.open_algo_orders()
        if a.symbol == symbol and is_own_protective(a.client_algo_id)
    ]


def assert_index_agrees(state: AccountState) -> None:
    for symbol in SYMBOLS:
        indexed = [a.client_algo_id for a in state.open_protective(symbol)]
        assert indexed == scanned(state, symbol)
        assert [a.client_algo_id for a in state.own_protective_known(symbol)] == indexed
    open_positions = [p for p in state.positions() if not p.is_flat]
    assert state.open_count() == len(open_positions)


def rest_algo(client_algo_id: str, symbol: str, algo_id: int) -> AlgoOrder:
    return AlgoOrder.parse(
        {
            "algoId": algo_id,
            "clientAlgoId": client_algo_id,
            "symbol": symbol,
            "side": "SELL",
            "orderType": "STOP_MARKET",
            "algoStatus": "NEW",
            "triggerPrice": "58000",
            "quantity": "0.010",
            "reduceOnly": True,
        }
    )


def rest_position(symbol: str, amount: str, entry: str) -> Position:
    # Taken after every fill below (they happened at 1_700_000_000_000): the snapshot holds them.
    raw = {"symbol": symbol, "positionAmt": amount, "entryPrice": entry, "updateTime": 2 * 10**12}
    return Position.parse(raw)


def test_own_legs_by_symbol_and_open_count_match_a_full_scan() -> None:
    state = AccountState()
    state.resync([], [])
    legs = {
        (symbol, n, role): client_order_id(f"k{n}{symbol}", role)
        for symbol in SYMBOLS
        for n in range(3)
        for role in ("sl", "tp")
    }
    algo_id = 100
    for (symbol, _n, _role), leg in legs.items():
        algo_id += 1
        feed(state, algo_message(client_algo_id=leg, symbol=symbol, algo_id=algo_id, time_ms=1))
        feed(state, algo_message(client_algo_id=f"web_{algo_id}", symbol=symbol, algo_id=algo_id + 1000))
        assert_index_agrees(state)
    # Fills open, add to, flip and close positions on both symbols.
    for trade, (symbol, side, qty) in enumerate(
        [("BTCUSDT", "BUY", "0.010"), ("ETHUSDT", "SELL", "1"), ("BTCUSDT", "SELL", "0.020")], start=1
    ):
        feed(state, fill_message(symbol=symbol, side=side, qty=qty, order_id=trade, trade_id=trade))
        assert_index_agrees(state)
    assert state.open_count() == 2
    # Triggered (still open, updated in place), then final; a foreign leg final too.
    sl0 = legs[("BTCUSDT", 0, "sl")]
    feed(state, algo_message(client_algo_id=sl0, status="TRIGGERED", actual_order_id="77", time_ms=2))
    assert_index_agrees(state)
    for leg in (sl0, legs[("ETHUSDT", 1, "tp")]):
        feed(state, algo_message(client_algo_id=leg, status="FINISHED", time_ms=3))
        assert_index_agrees(state)
    feed(state, fill_message(symbol="ETHUSDT", side="BUY", qty="1", order_id=9, trade_id=9))
    assert_index_agrees(state)
    assert state.open_count() == 1
    # A REST lookup of one leg, then a resync that keeps only some legs and other positions.
    state.record_algo(rest_algo(legs[("ETHUSDT", 2, "sl")], "ETHUSDT", 500))
    assert_index_agrees(state)
    kept = [rest_algo(legs[("BTCUSDT", 2, "tp")], "BTCUSDT", 112), rest_algo("web_x", "ETHUSDT", 600)]
    state.resync(
        [
            rest_position("ETHUSDT", "-3", "3000"),
            rest_position("BTCUSDT", "0", "0"),
        ],
        kept,
        as_of_ms=10**15,  # after everything above: the snapshot is the whole truth
    )
    assert_index_agrees(state)
    assert [a.client_algo_id for a in state.open_protective("BTCUSDT")] == [legs[("BTCUSDT", 2, "tp")]]
    assert state.open_protective("ETHUSDT") == []
    assert state.open_count() == 1 and state.position("ETHUSDT").amount == Decimal(-3)
