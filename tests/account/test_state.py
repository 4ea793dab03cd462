"""AccountState: fills, positions, algo orders, freshness and resync."""

from __future__ import annotations

import time
from copy import deepcopy
from decimal import Decimal
from typing import Any

import pytest

from account.samples import ACCOUNT_UPDATE, LISTEN_KEY_EXPIRED, algo_message, fill_message
from quantum_exec.account.events import parse_event
from quantum_exec.account.positions import PositionView
from quantum_exec.account.state import SETTLE_GRACE_S, AccountState
from quantum_exec.account.views import StaleStateError
from quantum_exec.core.ids import client_order_id
from quantum_exec.exchange.wire import AlgoOrder, AlgoStatus, Position

D = Decimal
SL = client_order_id("k1", "sl")
TP = client_order_id("k1", "tp")


def feed(state: AccountState, raw: dict[str, Any]) -> Any:
    event = parse_event(raw)
    assert event is not None
    return state.apply(event)


def fresh() -> AccountState:
    state = AccountState()
    state.resync([], [])
    return state


def rest_position(
    symbol: str, amount: str, entry: str, update_ms: int = 0, position_side: str = "BOTH"
) -> Position:
    return Position.parse(
        {
            "symbol": symbol,
            "positionAmt": amount,
            "entryPrice": entry,
            "positionSide": position_side,
            "updateTime": update_ms,
        }
    )


def rest_algo(client_algo_id: str, status: str = "NEW", qty: str = "0.010") -> AlgoOrder:
    return AlgoOrder.parse(
        {
            "algoId": 5,
            "clientAlgoId": client_algo_id,
            "symbol": "BTCUSDT",
            "side": "SELL",
            "orderType": "STOP_MARKET",
            "algoStatus": status,
            "triggerPrice": "58000",
            "quantity": qty,
            "reduceOnly": True,
        }
    )


def test_new_state_is_stale_until_resync() -> None:
    state = AccountState()
    with pytest.raises(StaleStateError):
        state.position("BTCUSDT")
    state.resync([], [])
    assert state.position("BTCUSDT") == PositionView("BTCUSDT")
    assert state.generation == 1


def test_mark_stale_blocks_every_query() -> None:
    state = fresh()
    state.mark_stale()
    for query in (
        lambda: state.position("BTCUSDT"),
        state.positions,
        state.open_algo_orders,
        lambda: state.open_protective("BTCUSDT"),
        lambda: state.fills_of("BTCUSDT", 1),
        lambda: state.algo_order(SL),
    ):
        with pytest.raises(StaleStateError):
            query()


def test_listen_key_expired_marks_stale() -> None:
    state = fresh()
    feed(state, LISTEN_KEY_EXPIRED)
    assert state.stale
    assert not state.is_current(1)


def test_generation_tells_a_reading_from_before_a_gap() -> None:
    state = fresh()
    generation = state.generation
    assert state.is_current(generation)
    state.mark_stale()
    state.resync([], [])
    assert not state.is_current(generation)
    assert state.is_current(generation + 1)


def test_fills_move_the_position_and_sum_per_order() -> None:
    state = fresh()
    a = feed(state, fill_message(order_id=1, trade_id=11, qty="0.004", price="60000", commission="0.096"))
    b = feed(state, fill_message(order_id=1, trade_id=12, qty="0.006", price="60100", commission="0.14424"))
    assert a.before == PositionView("BTCUSDT") and a.after.amount == D("0.004")
    assert b.before == a.after and b.after.amount == D("0.010")
    assert state.position("BTCUSDT") == PositionView("BTCUSDT", D("0.010"), D("60060"))
    summary = state.fills_of("BTCUSDT", 1)
    assert summary is not None
    assert summary.quantity == D("0.010")
    assert summary.avg_price == D("60060")
    assert summary.commission == D("0.24024")
    assert summary.commission_asset == "USDT"
    assert summary.realized_pnl == D(0)
    assert summary.trade_ids == (11, 12)
    assert state.last_event_time_ms == 1_700_000_000_001


def test_replayed_fill_counts_once() -> None:
    state = fresh()
    feed(state, fill_message(order_id=1, trade_id=11))
    again = feed(state, fill_message(order_id=1, trade_id=11))
    assert again.fill is None
    assert state.position("BTCUSDT").amount == D("0.010")
    summary = state.fills_of("BTCUSDT", 1)
    assert summary is not None and summary.trade_ids == (11,)


def test_realized_pnl_and_mixed_commission_assets() -> None:
    state = fresh()
    feed(state, fill_message(order_id=1, trade_id=1, qty="0.010", price="60000"))
    close1 = fill_message(side="SELL", order_id=2, trade_id=2, qty="0.004", price="61000", realized="4")
    close2 = fill_message(side="SELL", order_id=2, trade_id=3, qty="0.006", price="61000", realized="6")
    close2["o"]["N"] = "BNB"
    feed(state, close1)
    feed(state, close2)
    summary = state.fills_of("BTCUSDT", 2)
    assert summary is not None
    assert summary.realized_pnl == D("10")
    assert summary.commission_asset == "MIXED"
    assert state.position("BTCUSDT").is_flat


def test_fills_are_keyed_by_symbol() -> None:
    state = fresh()
    feed(state, fill_message(symbol="ETHUSDT", order_id=1, trade_id=1))
    assert state.fills_of("BTCUSDT", 1) is None
    assert state.fills_of("ETHUSDT", 1) is not None


def test_non_fill_order_events_change_nothing() -> None:
    state = fresh()
    raw = fill_message()
    raw["o"].update({"x": "NEW", "X": "NEW", "l": "0", "z": "0"})
    assert feed(state, raw).fill is None
    assert state.position("BTCUSDT").is_flat


def test_algo_lifecycle() -> None:
    state = fresh()
    feed(state, algo_message(client_algo_id=SL, status="NEW", time_ms=1))
    feed(state, algo_message(client_algo_id=TP, status="NEW", order_type="TAKE_PROFIT_MARKET", time_ms=1))
    feed(state, algo_message(client_algo_id="web_x", status="NEW", time_ms=1))
    assert [a.client_algo_id for a in state.open_protective("BTCUSDT")] == [SL, TP]
    assert len(state.open_algo_orders()) == 3
    feed(state, algo_message(client_algo_id=SL, status="TRIGGERED", actual_order_id="9001", time_ms=2))
    view = state.algo_order(SL)
    assert view is not None and view.status is AlgoStatus.TRIGGERED and not view.is_armed
    feed(
        state,
        algo_message(
            client_algo_id=SL, status="FINISHED", executed="0.010", actual_order_id="9001", time_ms=3
        ),
    )
    assert [a.client_algo_id for a in state.open_protective("BTCUSDT")] == [TP]
    finished = state.algo_order(SL)
    assert finished is not None and finished.status is AlgoStatus.FINISHED
    assert finished.executed_qty == D("0.010")
    assert state.algo_for_order(9001) == finished


def test_older_algo_update_is_ignored() -> None:
    state = fresh()
    feed(state, algo_message(client_algo_id=SL, status="TRIGGERING", time_ms=5))
    feed(state, algo_message(client_algo_id=SL, status="NEW", time_ms=4))
    view = state.algo_order(SL)
    assert view is not None and view.status is AlgoStatus.TRIGGERING


def test_resync_replaces_the_view() -> None:
    state = fresh()
    feed(state, fill_message(order_id=1, trade_id=1))
    feed(state, algo_message(client_algo_id=TP, time_ms=1))
    state.mark_stale()
    state.resync(
        [rest_position("ETHUSDT", "-2.5", "3000.5"), rest_position("BTCUSDT", "0", "0")],
        [rest_algo(SL), rest_algo("qxs-old", status="CANCELED")],
    )
    assert state.positions() == [PositionView("ETHUSDT", D("-2.5"), D("3000.5"))]
    assert state.position("BTCUSDT").is_flat
    assert [a.client_algo_id for a in state.open_algo_orders()] == [SL]
    assert state.fills_of("BTCUSDT", 1) is not None  # history survives a resync


T0 = 1_700_000_000_000  # fill_message's default trade time


def test_a_fill_newer_than_the_snapshot_survives_the_resync() -> None:
    state = fresh()
    feed(state, fill_message(order_id=1, trade_id=1, qty="0.010", price="60000", time_ms=T0 + 50))
    # positionRisk was asked at T0 and answered flat (its last change at T0 - 1000): the fill
    # landed while it travelled.
    state.resync(
        [
            rest_position("BTCUSDT", "0", "0", update_ms=T0 - 1000),
            rest_position("BTCUSDT", "9", "1", 0, "LONG"),
        ],
        [],
        as_of_ms=T0,
    )
    assert state.position("BTCUSDT") == PositionView("BTCUSDT", D("0.010"), D("60000"))
    assert state.drifted_symbols() == []


def test_a_fill_the_snapshot_holds_is_not_counted_twice() -> None:
    state = fresh()
    feed(state, fill_message(order_id=1, trade_id=1, qty="0.010", price="60000", time_ms=T0 + 50))
    feed(state, fill_message(order_id=2, trade_id=2, qty="0.005", price="61000", time_ms=T0 + 90))
    # Asked before both fills, but answered after the first: its updateTime says so.
    state.resync([rest_position("BTCUSDT", "0.010", "60000", update_ms=T0 + 50)], [], as_of_ms=T0)
    assert state.position("BTCUSDT").amount == D("0.015")
    # A snapshot asked after every fill holds them all.
    state.resync([rest_position("BTCUSDT", "0.015", "60333.3", update_ms=T0 + 90)], [], as_of_ms=T0 + 500)
    assert state.position("BTCUSDT") == PositionView("BTCUSDT", D("0.015"), D("60333.3"))


def test_legs_seen_after_the_snapshot_keep_what_the_stream_said() -> None:
    state = fresh()
    # TP armed while the listing travelled; SL triggered and finished in the same time.
    feed(state, algo_message(client_algo_id=TP, algo_id=6, time_ms=T0 + 10))
    feed(state, algo_message(client_algo_id=SL, algo_id=5, status="TRIGGERING", time_ms=T0 + 20))
    feed(
        state,
        algo_message(client_algo_id=SL, algo_id=5, status="FINISHED", executed="0.010", time_ms=T0 + 30),
    )
    other = client_order_id("k2", "sl")
    feed(state, algo_message(client_algo_id=other, algo_id=5, status="TRIGGERING", time_ms=T0 + 40))
    state.resync([], [rest_algo(SL), rest_algo(other)], as_of_ms=T0)
    assert {a.client_algo_id: a.status for a in state.open_algo_orders()} == {
        TP: AlgoStatus.NEW,
        other: AlgoStatus.TRIGGERING,
    }
    # A leg the stream saw before the listing was asked, and the listing lacks, is gone.
    state.resync([], [], as_of_ms=T0 + 1000)
    assert state.open_algo_orders() == []


def test_pushed_account_update_agreeing_is_no_drift() -> None:
    state = fresh()
    feed(state, fill_message(qty="20", price="6563.665", time_ms=1564745798938))
    update = deepcopy(ACCOUNT_UPDATE)
    update["a"]["P"] = [dict(update["a"]["P"][1], ps="BOTH")]
    feed(state, update)
    assert state.drifted_symbols() == []


def test_pushed_account_update_disagreeing_is_drift() -> None:
    state = fresh()
    update = deepcopy(ACCOUNT_UPDATE)
    update["a"]["P"] = [dict(update["a"]["P"][1], ps="BOTH")]
    feed(state, update)
    # Its fill may still be on the way (events of different types are not ordered): not yet.
    assert state.drifted_symbols() == []
    assert state.drifted_symbols(time.monotonic() + SETTLE_GRACE_S) == ["BTCUSDT"]


def test_an_account_update_ahead_of_its_fill_is_no_drift_once_the_fill_comes() -> None:
    state = fresh()
    update = deepcopy(ACCOUNT_UPDATE)  # T = 1564745798938, says 20
    update["a"]["P"] = [dict(update["a"]["P"][1], ps="BOTH")]
    feed(state, update)
    assert state.disagreeing_symbols() == ["BTCUSDT"]
    feed(state, fill_message(qty="20", price="6563.665", time_ms=1564745798938))  # its own fill, late
    assert state.disagreeing_symbols() == []
    assert state.drifted_symbols(time.monotonic() + SETTLE_GRACE_S) == []


def test_an_account_update_older_than_the_next_fill_of_the_same_ms_is_no_drift() -> None:
    """Two fills in one millisecond, each with its ACCOUNT_UPDATE: the first update, late behind
    both fills, disagrees only until the second update comes."""
    state = fresh()
    feed(state, fill_message(order_id=1, trade_id=1, qty="5", time_ms=1564745798938))
    feed(state, fill_message(order_id=1, trade_id=2, qty="15", time_ms=1564745798938))
    first = deepcopy(ACCOUNT_UPDATE)
    first["a"]["P"] = [dict(first["a"]["P"][1], ps="BOTH", pa="5")]
    feed(state, first)
    second = deepcopy(ACCOUNT_UPDATE)
    second["a"]["P"] = [dict(second["a"]["P"][1], ps="BOTH")]
    feed(state, second)
    assert state.drifted_symbols(time.monotonic() + SETTLE_GRACE_S) == []


def test_a_fill_arriving_after_a_snapshot_that_holds_it_is_not_counted_twice() -> None:
    """A resync ran while the fill's event was on the way: the snapshot has the fill already (its
    updateTime says so), so the late event is a fill of the order but moves nothing."""
    state = fresh()
    state.resync([rest_position("BTCUSDT", "0.010", "60000", update_ms=T0 + 50)], [], as_of_ms=T0 + 60)
    applied = feed(state, fill_message(order_id=1, trade_id=1, qty="0.010", price="60000", time_ms=T0 + 50))
    assert applied.fill is None
    assert state.position("BTCUSDT") == PositionView("BTCUSDT", D("0.010"), D("60000"))
    summary = state.fills_of("BTCUSDT", 1)
    assert summary is not None and summary.quantity == D("0.010")
    # A fill newer than the snapshot still moves the position.
    feed(state, fill_message(order_id=2, trade_id=2, qty="0.005", price="60000", time_ms=T0 + 70))
    assert state.position("BTCUSDT").amount == D("0.015")


def test_a_leg_armed_ahead_of_the_fill_it_protects_is_settling_for_the_grace() -> None:
    state = fresh()
    feed(state, fill_message(order_id=1, trade_id=1, time_ms=T0))
    # Placed after a second entry filled at T0 + 20, whose event has not come yet.
    feed(state, algo_message(client_algo_id=SL, algo_id=5, time_ms=T0 + 30))
    [leg] = state.open_protective("BTCUSDT")
    assert state.settling(leg)
    assert not state.settling(leg, time.monotonic() + SETTLE_GRACE_S)
    at = state.settles_at("BTCUSDT")
    assert at is not None and 0 < at - time.monotonic() <= SETTLE_GRACE_S
    feed(state, fill_message(order_id=2, trade_id=2, time_ms=T0 + 20))
    assert state.settling(leg)  # a fill older than the leg: another may still be on the way
    feed(state, fill_message(order_id=3, trade_id=3, time_ms=T0 + 40))
    assert not state.settling(leg)  # a newer fill: every fill before the leg has come (one type)
    assert state.settles_at("BTCUSDT") is None


def test_pushed_update_older_than_a_fill_is_not_drift() -> None:
    state = fresh()
    update = deepcopy(ACCOUNT_UPDATE)  # T = 1564745798938, says 20
    update["a"]["P"] = [dict(update["a"]["P"][1], ps="BOTH")]
    feed(state, update)
    feed(state, fill_message(qty="25", time_ms=1564745798999))
    assert state.drifted_symbols() == []


def test_the_view_knows_an_algo_id_open_or_final_and_no_other() -> None:
    """knows_algo_id (indexed, not a scan): open, final, replaced under the same client id, merged
    from REST, and unknown ids."""
    state = fresh()
    feed(state, algo_message(client_algo_id=SL, status="NEW", algo_id=11, time_ms=1))
    feed(state, algo_message(client_algo_id=TP, status="NEW", algo_id=12, time_ms=1))
    assert state.knows_algo_id(11) and state.knows_algo_id(12)
    assert not state.knows_algo_id(13)
    feed(state, algo_message(client_algo_id=SL, status="CANCELED", algo_id=11, time_ms=2))
    assert state.knows_algo_id(11)  # recently final
    # A new leg under the same client id (ids are unique among open orders only): both are known,
    # the new one open, the old one recently final.
    feed(state, algo_message(client_algo_id=SL, status="NEW", algo_id=14, time_ms=3))
    assert state.knows_algo_id(14) and state.knows_algo_id(11)
    # Once the new leg ends too, the final one held under the client id is the new one.
    feed(state, algo_message(client_algo_id=SL, status="CANCELED", algo_id=14, time_ms=4))
    assert state.knows_algo_id(14) and not state.knows_algo_id(11)
    state.resync([], [rest_algo("web_y")])  # REST snapshot: algoId 5
    assert state.knows_algo_id(5)
