"""The one leg placer's error policy as a table: each answer of the exchange -> what execution/legs.py does.

Every row runs against the simulator over real HTTP with the real python-binance client; the
answers are the simulator's faults, and what happened is read from its own history of conditional
orders, never from what the placer says about itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from binance_sim import Simulator
from binance_sim.params import Params
from quantum_exec.account.roles import replacement_of
from quantum_exec.core.errors import UnknownOutcomeError
from quantum_exec.core.ids import client_order_id
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.fencing import OwnershipLost, reset_check, set_check
from quantum_exec.exchange.gateway import BinanceGateway
from quantum_exec.exchange.wire import AlgoStatus, OrderSide, OrderType
from quantum_exec.execution.legs import LegOrder, LegPlacer, inside_mark
from support.sim_state import algo_orders

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SYMBOL = "BTCUSDT"
TICK = Decimal("0.1")
NEW_ALGO = {"method": "POST", "path": "/fapi/v1/algoOrder"}


@dataclass(frozen=True)
class Row:
    """One answer and what the placer must make of it."""

    answer: str
    faults: list[dict[str, Any]]
    standing: bool  # the placement stands on the exchange afterwards
    error_code: int | None = None  # the failure it returns (None: none)
    orders: int = 1  # conditional orders the placer left under the leg's id (the simulator's history)
    rerounded: bool = False  # the trigger was moved one tick inside the mark
    open_before: Decimal | None = None  # a leg of ours already open under the id, of this quantity
    settings: dict[str, Any] = field(default_factory=dict)


PLACE_TABLE = [
    Row("accepted", [], standing=True),
    Row(
        "retryable -1015 (not processed): sent again",
        [{"kind": "error", **NEW_ALGO, "code": -1015, "msg": "Too many new orders.", "count": 1}],
        standing=True,
    ),
    Row(
        "retryable past protection_retries: a failure",
        [{"kind": "error", **NEW_ALGO, "code": -1015, "msg": "Too many new orders.", "count": 2}],
        standing=False,
        error_code=-1015,
        orders=0,
        settings={"protection_retries": 1},
    ),
    Row(
        "503 before processing (outcome unknown): looked up, certainly absent, sent again",
        [{"kind": "unavailable", **NEW_ALGO, "count": 1}],
        standing=True,
    ),
    Row(
        "503 after processing (outcome unknown): looked up and found, not sent again",
        [{"kind": "unknown_after", **NEW_ALGO, "count": 1}],
        standing=True,
    ),
    Row(
        "-1007 timeout after processing: looked up and found",
        [{"kind": "timeout_after", **NEW_ALGO, "count": 1}],
        standing=True,
    ),
    Row(
        "an unreadable 200: looked up and found",
        [{"kind": "garbled_after", **NEW_ALGO, "count": 1}],
        standing=True,
    ),
    Row(
        "-2021 would trigger: re-rounded inside the mark once",
        [{"kind": "would_trigger", "count": 1}],
        standing=True,
        rerounded=True,
    ),
    Row(
        "-2021 twice: a failure, never a third request",
        [{"kind": "would_trigger", "count": 2}],
        standing=False,
        error_code=-2021,
        orders=0,
    ),
    Row(
        "-2021 and the mark cannot be read: a failure (the caller's policy), not raised",
        [
            {"kind": "would_trigger", "count": 1},
            {"kind": "error", "method": "GET", "path": "/fapi/v1/premiumIndex", "code": -1102},
        ],
        standing=False,
        error_code=-2021,
        orders=0,
    ),
    Row(
        "-4116 and ours stands for the quantity asked: that one",
        [],
        standing=True,
        orders=0,
        open_before=Decimal("0.010"),
    ),
    Row(
        "-4116 and ours stands for more (reduce-only: it covers): that one",
        [],
        standing=True,
        orders=0,
        open_before=Decimal("0.020"),
    ),
    Row(
        "-4116 and ours stands for less: a failure",
        [],
        standing=False,
        error_code=-4116,
        orders=0,
        open_before=Decimal("0.005"),
    ),
    Row(
        "any other refusal: a failure, not retried",
        [{"kind": "error", **NEW_ALGO, "code": -2010, "msg": "Order would be rejected.", "count": 1}],
        standing=False,
        error_code=-2010,
        orders=0,
    ),
]


@pytest.fixture
async def gateway(make_settings: Callable[..., Settings], sim: Simulator) -> AsyncIterator[BinanceGateway]:
    gw = BinanceGateway(make_settings(recv_window_ms=500), sim.base_url)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.close()


def _stop(key: str, sim: Simulator, quantity: Decimal = Decimal("0.010")) -> LegOrder:
    """A SELL stop of a long, 2% below the mark."""
    trigger = (sim.engine.mark(SYMBOL) * Decimal("0.98")).quantize(TICK)
    return LegOrder(
        SYMBOL, OrderSide.SELL, OrderType.STOP_MARKET, trigger, client_order_id(key, "sl"), quantity
    )


def _history(sim: Simulator, client_algo_id: str) -> list[dict[str, Any]]:
    return [a for a in algo_orders(sim, symbol=SYMBOL) if a["clientAlgoId"] == client_algo_id]


@pytest.mark.parametrize("row", PLACE_TABLE, ids=[row.answer for row in PLACE_TABLE])
async def test_placement_policy(
    row: Row, sim: Simulator, gateway: BinanceGateway, make_settings: Callable[..., Settings]
) -> None:
    placer = LegPlacer(make_settings(recv_window_ms=500, **row.settings), gateway)
    leg = _stop(f"legs-{row.answer}", sim)
    before = None
    if row.open_before is not None:
        before = await gateway.place_algo(
            SYMBOL,
            leg.side,
            leg.order_type,
            leg.trigger_price,
            leg.client_algo_id,
            quantity=row.open_before,
            working_type="CONTRACT_PRICE",
            price_protect=False,
        )
    mark = sim.engine.mark(SYMBOL)
    sim.set_faults(faults=row.faults)

    placed = await placer.place(leg)
    sim.set_faults(faults=[])

    history = _history(sim, leg.client_algo_id)
    assert len(history) == row.orders + (before is not None), history
    assert placed.standing is row.standing, placed
    assert (placed.error.code if placed.error else None) == row.error_code, placed.error
    if row.standing:
        assert placed.order is not None
        [onexchange] = [a for a in history if a["algoId"] == placed.order.algo_id]
        assert onexchange["algoStatus"] == "NEW"
        expected = (
            inside_mark(gateway.rules.get(SYMBOL), leg.side, leg.order_type, mark) if row.rerounded else None
        )
        assert Decimal(onexchange["triggerPrice"]) == (expected or leg.trigger_price)
        assert placed.trigger_price == Decimal(onexchange["triggerPrice"])
        if before is not None:
            assert placed.order.algo_id == before.algo_id  # -4116: ours, found, not a second one
    else:
        assert placed.order is None
        if before is not None:
            [kept] = history  # the leg already there is left as it was
            assert kept["algoId"] == before.algo_id and kept["algoStatus"] == "NEW"


async def test_a_lost_lease_stops_before_anything_is_sent(
    sim: Simulator, gateway: BinanceGateway, make_settings: Callable[..., Settings]
) -> None:
    placer = LegPlacer(make_settings(), gateway)
    leg = _stop("legs-lease", sim)
    armed = await placer.place(_stop("legs-lease-armed", sim))
    assert armed.order is not None

    async def not_ours() -> bool:
        return False

    token = set_check(not_ours)
    try:
        with pytest.raises(OwnershipLost):
            await placer.place(leg)
        with pytest.raises(OwnershipLost):
            await placer.cancel(armed.order.algo_id)
    finally:
        reset_check(token)
    assert _history(sim, leg.client_algo_id) == []
    assert [a["algoStatus"] for a in _history(sim, armed.order.client_algo_id)] == ["NEW"]


async def test_cancel_policy(
    sim: Simulator, gateway: BinanceGateway, make_settings: Callable[..., Settings]
) -> None:
    placer = LegPlacer(make_settings(), gateway)
    first = (await placer.place(_stop("legs-cancel-1", sim))).order
    second = (await placer.place(_stop("legs-cancel-2", sim))).order
    assert first is not None and second is not None
    # Armed: cancelled. No longer open: -2011, answered False.
    assert await placer.cancel(first.algo_id) is True
    assert await placer.cancel(first.algo_id) is False
    assert [a["algoStatus"] for a in _history(sim, first.client_algo_id)] == ["CANCELED"]
    # An unknown outcome is raised for the caller's next run to read the leg again (a resumed
    # intent looks its legs up; the OCO plans again from the view).
    sim.set_faults(
        faults=[{"kind": "unknown_after", "method": "DELETE", "path": "/fapi/v1/algoOrder", "count": 1}]
    )
    with pytest.raises(UnknownOutcomeError):
        await placer.cancel(second.algo_id)
    found = await placer.find(second.client_algo_id)
    assert found is not None and found.status is AlgoStatus.CANCELED


async def test_replace_is_make_before_break(
    sim: Simulator, gateway: BinanceGateway, make_settings: Callable[..., Settings]
) -> None:
    placer = LegPlacer(make_settings(), gateway)
    old = (await placer.place(_stop("legs-replace", sim))).order
    assert old is not None
    new = LegOrder(
        SYMBOL,
        old.side,
        old.order_type,
        old.trigger_price,
        replacement_of(old.client_algo_id),
        Decimal("0.006"),
    )
    done = await placer.replace(old, new)
    assert done.old_cancelled is True and done.placed.order is not None
    [was] = _history(sim, old.client_algo_id)
    [now] = _history(sim, new.client_algo_id)
    assert was["algoStatus"] == "CANCELED" and now["algoStatus"] == "NEW"
    assert Decimal(now["quantity"]) == Decimal("0.006")
    assert was["updateTime"] >= now["createTime"]  # the old one went only once the new one stood


async def test_a_replacement_that_is_not_armed_leaves_the_old_leg(
    sim: Simulator, gateway: BinanceGateway, make_settings: Callable[..., Settings]
) -> None:
    placer = LegPlacer(make_settings(), gateway)
    old = (await placer.place(_stop("legs-keep", sim))).order
    assert old is not None
    replacement = LegOrder(
        SYMBOL,
        old.side,
        old.order_type,
        old.trigger_price,
        replacement_of(old.client_algo_id),
        Decimal("0.004"),
    )
    sim.set_faults(faults=[{"kind": "would_trigger", "count": 2}])
    done = await placer.replace(old, replacement)
    assert done.old_cancelled is None and not done.placed.standing
    assert done.placed.error is not None and done.placed.error.code == -2021
    assert [a["algoStatus"] for a in _history(sim, old.client_algo_id)] == ["NEW"]
    assert _history(sim, replacement.client_algo_id) == []


async def test_a_close_position_leg_refused_by_4130_is_placed_as_its_fallback_quantity(
    sim: Simulator, gateway: BinanceGateway, make_settings: Callable[..., Settings]
) -> None:
    # One closePosition stop already stands on the side (someone else's, or an earlier entry's).
    sim.engine.new_order(Params({"symbol": SYMBOL, "side": "BUY", "type": "MARKET", "quantity": "0.020"}))
    placer = LegPlacer(make_settings(), gateway)
    first = await placer.place(dataclasses.replace(_stop("legs-cp-1", sim), quantity=None))
    assert first.order is not None and first.order.close_position
    plain = dataclasses.replace(_stop("legs-cp-2", sim), quantity=None)
    refused = await placer.place(plain)  # no fallback: -4130 is a failure, nothing else is sent
    assert refused.error is not None and refused.error.code == -4130 and refused.order is None
    fallback = dataclasses.replace(_stop("legs-cp-3", sim), quantity=None, fallback_quantity=Decimal("0.010"))
    placed = await placer.place(fallback)
    assert placed.order is not None and not placed.order.close_position
    [onexchange] = _history(sim, fallback.client_algo_id)
    assert (onexchange["closePosition"], onexchange["quantity"], onexchange["reduceOnly"]) == (
        False,
        "0.010",
        True,
    )
