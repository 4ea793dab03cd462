"""Regression guard from the adversarial review (passes on main): another program's stop and
take-profit on the same symbol survive a MODIFY and a HALT + flatten (P4, from the simulator's own
history: never cancelled, never counted as ours), and the flatten still ends flat with no
conditional order of ours."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from binance_sim.params import Params
from quantum_exec.contracts import ProtectionState
from quantum_exec.risk.states import Request, TradingState
from quantum_exec.risk.store import RiskStore
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

D = Decimal


async def test_foreign_legs_survive_a_modify_and_a_flatten(desk: Desk) -> None:
    mark = desk.sim.engine.mark("BTCUSDT")
    for kind, trigger in (("STOP_MARKET", mark * D("0.5")), ("TAKE_PROFIT_MARKET", mark * D("1.5"))):
        desk.sim.engine.new_algo_order(
            Params(
                {
                    "algoType": "CONDITIONAL",
                    "symbol": "BTCUSDT",
                    "side": "SELL",
                    "type": kind,
                    "triggerPrice": str(trigger.quantize(D("0.1"))),
                    "quantity": "0.003",
                    "clientAlgoId": f"other-bot-{kind}",
                }
            )
        )
    service = await desk.service(risk_stream=f"{desk.names['intent_stream']}:risk")
    await desk.publish(
        intent_id="own", symbol="BTCUSDT", side="BUY", quantity="0.010", stop_loss_pct=3, take_profit_pct=4
    )
    assert (await desk.result("own")).protection is ProtectionState.PROTECTED
    await desk.publish(intent_id="mod", symbol="BTCUSDT", side="MODIFY", stop_loss_pct=2)
    modified = await desk.result("mod")
    assert modified.error is None and modified.legs_before is not None
    assert all(leg.client_algo_id.startswith("qx") for leg in modified.legs_before)
    await RiskStore(desk.redis, service.settings).transition(
        Request(TradingState.HALTED, "review", "operator:review", flatten=True)
    )

    async def done() -> bool:
        rows = await desk.redis.xrange(f"{desk.names['intent_stream']}:risk")
        events: list[dict[str, Any]] = [json.loads(f[b"payload"]) for _sid, f in rows]
        return any(e["kind"] == "flatten_done" for e in events)

    await wait_for(done, 30, "the flatten done")
    state = desk.sim.state()
    foreign = [a for a in state["algoOrders"] if not a["clientAlgoId"].startswith("qx")]
    assert sorted(a["algoStatus"] for a in foreign) == ["NEW", "NEW"], foreign
    assert desk.position("BTCUSDT") == 0
    assert not [
        a for a in state["algoOrders"] if a["clientAlgoId"].startswith("qx") and a["algoStatus"] == "NEW"
    ]
