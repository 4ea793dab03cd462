"""Adversarial review (P5): a poison MODIFY answered from one read of the exchange must not say that
nothing happened when its dead attempts moved the stop.

``execution/survey.py`` looks a poison intent up as an entry (``role = "close" if CLOSE else
"entry"``): for a MODIFY there is no entry, so the answer reads "nothing filled, nothing opened",
though the exchange holds the MODIFY's new stop under its own id and the old stop is gone. What
the dead attempts left is made here by a signed client under the intents' client ids, as in
``test_poison_survey.py``; the exchange is read from the simulator.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from quantum_exec.contracts import ResultStatus
from quantum_exec.core.ids import client_order_id
from reliability.adversary import QUANTITY, TICK, signed
from reliability.harness import Rig

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

MAX_ATTEMPTS = 5
SYMBOL = "BTCUSDT"


def _price(value: Decimal) -> str:
    return str(value.quantize(Decimal(TICK[SYMBOL])))


def _leg(rig: Rig, cid: str, kind: str, trigger: Decimal) -> dict[str, Any]:
    reply: dict[str, Any] = signed(
        rig.sim,
        "POST",
        "/fapi/v1/algoOrder",
        {
            "symbol": SYMBOL,
            "algoType": "CONDITIONAL",
            "side": "SELL",
            "type": kind,
            "triggerPrice": _price(trigger),
            "quantity": QUANTITY[SYMBOL],
            "reduceOnly": "true",
            "clientAlgoId": cid,
        },
    )
    return reply


@pytest.mark.timeout(180)
def test_a_poison_modify_whose_stop_moved_is_not_answered_as_nothing_happened(tmp_path: Path) -> None:
    with Rig(tmp_path) as rig:
        mark = Decimal(rig.sim.state()["markPrices"][SYMBOL])
        # An open position of an earlier intent, with its stop and target.
        signed(
            rig.sim,
            "POST",
            "/fapi/v1/order",
            {
                "symbol": SYMBOL,
                "side": "BUY",
                "type": "MARKET",
                "quantity": QUANTITY[SYMBOL],
                "newClientOrderId": client_order_id("pos", "entry"),
            },
        )
        old_stop = _leg(rig, client_order_id("pos", "sl"), "STOP_MARKET", mark * Decimal("0.97"))
        _leg(rig, client_order_id("pos", "tp"), "TAKE_PROFIT_MARKET", mark * Decimal("1.03"))
        # The MODIFY's dead attempts: the new stop (and the target carried over) armed under the
        # MODIFY's ids, the old stop and target cancelled.
        new_stop = mark * Decimal("0.96")
        _leg(rig, client_order_id("poison-mod", "sl"), "STOP_MARKET", new_stop)
        _leg(rig, client_order_id("poison-mod", "tp"), "TAKE_PROFIT_MARKET", mark * Decimal("1.03"))
        signed(rig.sim, "DELETE", "/fapi/v1/algoOrder", {"algoId": str(old_stop["algoId"])})
        old_tp = next(
            a for a in rig.sim.state()["algoOrders"] if a["clientAlgoId"] == client_order_id("pos", "tp")
        )
        signed(rig.sim, "DELETE", "/fapi/v1/algoOrder", {"algoId": str(old_tp["algoId"])})
        payload = {
            "intent_id": "poison-mod",
            "symbol": SYMBOL,
            "action": "MODIFY",
            "stop_loss": _price(new_stop),
        }
        rig.streams.client.hset(
            f"{rig.names.key_prefix}:idem:poison-mod",
            mapping={"state": "in_flight", "attempts": MAX_ATTEMPTS, "repair": 1},
        )
        rig.streams.publish_many([payload])
        service = rig.service("poison-mod", max_attempts=MAX_ATTEMPTS, intent_ttl_s=600).start()
        [result] = rig.streams.wait_answered({"poison-mod"}, 60)
        assert service.terminate() == 0
        after = rig.sim.state()

    armed = {a["clientAlgoId"] for a in after["algoOrders"] if a["algoStatus"] == "NEW"}
    assert client_order_id("poison-mod", "sl") in armed  # the exchange: the stop moved
    assert client_order_id("pos", "sl") not in armed
    assert result.status is ResultStatus.FAILED and result.error is not None
    assert result.error.code == "POISON_MESSAGE"
    # P5: the answer says what the exchange holds under the MODIFY's ids, never "nothing".
    message = result.error.message
    assert "nothing" not in message, message
    assert client_order_id("poison-mod", "sl") in message, message
