"""A deposed instance changes nothing on the exchange: cancels and leverage are fenced like orders.

The instance stalls on a read (the simulator holds the reply) while its symbol lease is taken over
by another instance, as one does once the stalled holder's lease expired. What it sends next, a
cancel of the legs that now protect the other instance's position or a leverage change under
its entry, must be refused by the fence before it leaves.
"""

from __future__ import annotations

import pytest

from quantum_exec.contracts import ProtectionState
from quantum_exec.core.ids import client_order_id
from quantum_exec.ops import metrics
from quantum_exec.stream.store import Store
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _in_flight() -> float:
    return metrics.REGISTRY.get_sample_value("quantum_exec_in_flight_intents") or 0.0


async def _depose_during(desk: Desk, symbol: str, method: str, path: str, publish: dict[str, str]) -> None:
    """Publish ``publish``; while its attempt waits on ``method path``, another instance takes the
    symbol's lease; return once the deposed attempt has ended."""
    request = f"{method} {path}"
    asked = desk.sim.request_counts[request]
    desk.sim.set_faults(faults=[{"kind": "latency", "ms": 1500, "method": method, "path": path, "count": 1}])
    await desk.publish(**publish)
    await wait_for(lambda: desk.sim.request_counts[request] > asked, 10, f"the stalled {request}")
    # The holder's lease expired (deleted here) and the other instance took it with a new token.
    store = Store(desk.redis, desk.settings(lease_ttl_ms=60_000))
    await desk.redis.delete(store.keys.lease(symbol))
    assert await store.acquire_lease(symbol, "instance-b") is not None
    await wait_for(lambda: _in_flight() == 0, 10, "the deposed attempt ended")


async def test_a_deposed_instance_cannot_cancel_the_legs_of_the_new_owner(desk: Desk) -> None:
    await desk.service(user_stream=False)  # a CLOSE lists the legs to cancel by REST
    await desk.publish(
        intent_id="open", symbol="ETHUSDT", side="BUY", quantity="0.2", stop_loss_pct="2", take_profit_pct="3"
    )
    opened = await desk.result("open")
    assert opened.protection is ProtectionState.PROTECTED
    legs = [client_order_id("open", "sl"), client_order_id("open", "tp")]
    assert [desk.algo_status(leg) for leg in legs] == ["NEW", "NEW"]
    cancels = desk.sim.request_counts["DELETE /fapi/v1/algoOrder"]

    close = {"intent_id": "close", "symbol": "ETHUSDT", "side": "CLOSE"}
    await _depose_during(desk, "ETHUSDT", "GET", "/fapi/v1/openAlgoOrders", close)

    # The close went out while the lease was still its own; the cancels that follow never left
    # (on a live account the legs it listed would include those of the new owner's position).
    assert desk.sim.request_counts["DELETE /fapi/v1/algoOrder"] == cancels
    assert [desk.algo_status(leg) for leg in legs] == ["NEW", "NEW"]
    assert "close" not in await desk.results()  # the new owner answers it


async def test_a_deposed_instance_cannot_change_the_leverage(desk: Desk) -> None:
    await desk.service(user_stream=False)  # the position before the entry is read by REST
    entry = {
        "intent_id": "lev",
        "symbol": "LINKUSDT",
        "side": "BUY",
        "position_size_usd": "100",
        "leverage": "7",
    }
    await _depose_during(desk, "LINKUSDT", "GET", "/fapi/v2/positionRisk", entry)

    assert desk.sim.request_counts["POST /fapi/v1/leverage"] == 0
    assert desk.sim.request_counts["POST /fapi/v1/marginType"] == 0
    assert desk.sim.request_counts["POST /fapi/v1/order"] == 0
    assert desk.position("LINKUSDT") == 0
