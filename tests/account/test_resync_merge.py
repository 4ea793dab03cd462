"""A resync merges its REST snapshot into the live view: a fill that lands while the snapshot
travels survives it (style.md 17), and the leader does not treat the real position as flat.

The service runs whole over real Redis and the simulator; the resync is a takeover's (the account
lease comes back to the service), made slow by the simulator's latency on openAlgoOrders (the
positionRisk snapshot is taken before the entry fills and applied after) or on positionRisk (the
snapshot already holds the fill the stream brought).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.mark.parametrize(
    "slow",
    [
        # positionRisk answered before the fill, applied after it: the fill must survive.
        "/fapi/v1/openAlgoOrders",
        # positionRisk answered after the fill (it holds it already): the fill must not count twice.
        "/fapi/v2/positionRisk",
    ],
)
async def test_a_fill_during_a_slow_resync_survives_it_and_the_close_closes_it(desk: Desk, slow: str) -> None:
    service = await desk.service()
    account = service.account
    assert account is not None and account.leader
    mark = desk.sim.engine.mark("BTCUSDT")
    desk.sim.set_faults(faults=[{"kind": "latency", "method": "GET", "path": slow, "ms": 1500, "count": 1}])
    asked = desk.sim.request_counts[f"GET {slow}"]
    resyncs_before = account.state.generation
    # Another owner holds the account lease for a moment; taking it back resyncs (a takeover).
    await desk.redis.set(account.store.lease_key, "999999|someone-else", px=400)
    await wait_for(lambda: desk.sim.request_counts[f"GET {slow}"] > asked, 10, "the takeover's slow request")
    assert account.state.generation == resyncs_before  # the snapshots are on their way, not applied

    await desk.publish(
        intent_id="merge-open",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * Decimal("0.98")).quantize(Decimal("0.1"))),
        take_profit=str((mark * Decimal("1.04")).quantize(Decimal("0.1"))),
    )
    opened = await desk.result("merge-open")
    assert opened.status is ResultStatus.FILLED and opened.protection is ProtectionState.PROTECTED
    assert opened.stop_loss is not None and opened.take_profit is not None
    assert account.state.generation == resyncs_before, "the entry must land while the resync travels"

    await wait_for(
        lambda: account.state.generation > resyncs_before and not account.resync.busy,
        10,
        "the takeover's resync and reconciliation done",
    )
    assert account.leader
    # Reconciliation and the live OCO have run on the merged view: nothing to cancel.
    await wait_for(lambda: account.oco.idle(), 5, "the OCO idle")
    assert account.position_amount("BTCUSDT") == Decimal("0.010")
    assert desk.position("BTCUSDT") == Decimal("0.010")
    assert desk.algo_status(opened.stop_loss.client_algo_id) == "NEW"
    assert desk.algo_status(opened.take_profit.client_algo_id) == "NEW"

    await desk.publish(intent_id="merge-close", symbol="BTCUSDT", side="CLOSE")
    closed = await desk.result("merge-close")
    assert closed.status is ResultStatus.FILLED, closed.error
    assert closed.executed_quantity == Decimal("0.010")
    assert desk.position("BTCUSDT") == 0
    await wait_for(lambda: not desk.open_algos("BTCUSDT"), 5, "no legs left")
