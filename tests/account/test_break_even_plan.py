"""The break-even plan and the OCO's rules for ladders and trailing stops (pure, from the view and
the records): exact triggers, nothing asked twice."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from account.samples import algo_message, fill_message
from quantum_exec.account.break_even import plan_break_even
from quantum_exec.account.events import parse_event
from quantum_exec.account.oco import Cancel, plan_oco
from quantum_exec.account.record import Record
from quantum_exec.account.state import AccountState
from quantum_exec.core.ids import client_order_id, replacement_of, tp_level_id

D = Decimal
KEY = "ladder-k"
SL = client_order_id(KEY, "sl")


def feed(state: AccountState, raw: dict[str, Any]) -> None:
    event = parse_event(raw)
    assert event is not None
    state.apply(event)


def record(after: int | None = 1, trigger: str = "60060.0") -> Record:
    return Record(
        digest="d",
        intent_key=KEY,
        intent_id=KEY,
        symbol="BTCUSDT",
        long=True,
        quantity=D("0.010"),
        stop_loss=D("58000"),
        take_profit=None,
        opened=True,
        break_even_after=after,
        break_even=D(trigger) if after is not None else None,
    )


def laddered(level_one: str = "NEW") -> AccountState:
    """A long of 0.010 with our stop and two ladder levels (0.004 at 61000, 0.006 at 62000)."""
    state = AccountState()
    state.resync([], [])
    feed(
        state,
        fill_message(order_id=1, trade_id=1, qty="0.010", client_order_id=client_order_id(KEY, "entry")),
    )
    feed(state, algo_message(client_algo_id=SL, qty="0.010", trigger="58000", algo_id=1, time_ms=1))
    level_one_msg = algo_message(
        client_algo_id=tp_level_id(KEY, 1),
        order_type="TAKE_PROFIT_MARKET",
        qty="0.004",
        trigger="61000",
        algo_id=2,
        time_ms=1,
    )
    feed(state, level_one_msg)
    feed(
        state,
        algo_message(
            client_algo_id=tp_level_id(KEY, 2),
            order_type="TAKE_PROFIT_MARKET",
            qty="0.006",
            trigger="62000",
            algo_id=3,
            time_ms=1,
        ),
    )
    if level_one == "FINISHED":
        feed(state, fill_message(order_id=9, trade_id=9, qty="0.004", side="SELL", client_order_id="x-9"))
        done = algo_message(
            client_algo_id=tp_level_id(KEY, 1),
            order_type="TAKE_PROFIT_MARKET",
            qty="0.004",
            trigger="61000",
            algo_id=2,
            status="FINISHED",
            executed="0.004",
            actual_order_id="9",
            time_ms=5,
        )
        feed(state, done)
    return state


def test_no_move_before_the_level_fills() -> None:
    assert plan_break_even(laddered(), [record()], "BTCUSDT") == []


def test_the_stop_moves_once_the_level_filled_and_not_again_once_there() -> None:
    state = laddered("FINISHED")
    [move] = plan_break_even(state, [record()], "BTCUSDT")
    assert move.old.client_algo_id == SL and move.trigger == D("60060.0")
    # The stop sits at break-even (its replacement armed, the old one cancelled): nothing more.
    feed(
        state,
        algo_message(
            client_algo_id=SL, qty="0.010", trigger="58000", algo_id=1, status="CANCELED", time_ms=6
        ),
    )
    feed(
        state,
        algo_message(client_algo_id=replacement_of(SL), qty="0.006", trigger="60060.0", algo_id=4, time_ms=7),
    )
    assert plan_break_even(state, [record()], "BTCUSDT") == []
    # A record without break_even_after, or after a later level, asks for nothing.
    assert plan_break_even(laddered("FINISHED"), [record(None)], "BTCUSDT") == []
    assert plan_break_even(laddered("FINISHED"), [record(2)], "BTCUSDT") == []


def test_a_ladder_level_that_filled_shrinks_the_stop_and_never_cancels_it() -> None:
    actions = plan_oco(laddered("FINISHED"), "BTCUSDT")
    assert not [a for a in actions if isinstance(a, Cancel) and a.client_algo_id == SL], actions
    assert [(a.client_algo_id, a.new_qty) for a in actions if not isinstance(a, Cancel)] == [(SL, D("0.006"))]


def test_a_trailing_stop_larger_than_the_position_is_left_alone() -> None:
    state = laddered("FINISHED")
    trail = client_order_id(KEY, "trail")
    feed(
        state,
        algo_message(
            client_algo_id=trail,
            order_type="TRAILING_STOP_MARKET",
            qty="0.010",
            trigger="0",
            algo_id=5,
            time_ms=8,
        ),
    )
    assert all(a.client_algo_id != trail for a in plan_oco(state, "BTCUSDT"))
