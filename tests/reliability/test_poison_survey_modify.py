"""A poison MODIFY killed half way (its new stop armed, its new target not, the old legs still
armed): the answer read once from the exchange says so, leg by leg, and never ``protected``.

What the dead attempts left is made by a signed client under the intents' client ids, as in
``test_poison_survey.py``; the exchange is read from the simulator.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id
from reliability.adversary import QUANTITY, TICK, signed
from reliability.harness import Rig

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

MAX_ATTEMPTS = 5
SYMBOL = "BTCUSDT"


def _price(value: Decimal) -> str:
    return str(value.quantize(Decimal(TICK[SYMBOL])))


def _leg(rig: Rig, cid: str, kind: str, trigger: Decimal) -> None:
    signed(
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


@pytest.mark.timeout(180)
def test_a_poison_modify_killed_half_way_names_each_leg_and_is_not_protected(tmp_path: Path) -> None:
    with Rig(tmp_path) as rig:
        mark = Decimal(rig.sim.state()["markPrices"][SYMBOL])
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
        _leg(rig, client_order_id("pos", "sl"), "STOP_MARKET", mark * Decimal("0.97"))
        _leg(rig, client_order_id("pos", "tp"), "TAKE_PROFIT_MARKET", mark * Decimal("1.03"))
        # The MODIFY's dead attempt armed its new stop only; nothing old was cancelled yet.
        _leg(rig, client_order_id("half-mod", "sl"), "STOP_MARKET", mark * Decimal("0.96"))
        payload = {
            "intent_id": "half-mod",
            "symbol": SYMBOL,
            "action": "MODIFY",
            "stop_loss": _price(mark * Decimal("0.96")),
            "take_profit": _price(mark * Decimal("1.05")),
        }
        rig.streams.client.hset(
            f"{rig.names.key_prefix}:idem:half-mod",
            mapping={"state": "in_flight", "attempts": MAX_ATTEMPTS, "repair": 1},
        )
        rig.streams.publish_many([payload])
        service = rig.service("half-mod", max_attempts=MAX_ATTEMPTS, intent_ttl_s=600).start()
        [result] = rig.streams.wait_answered({"half-mod"}, 60)
        assert service.terminate() == 0
        after = rig.sim.state()

    armed = {a["clientAlgoId"] for a in after["algoOrders"] if a["algoStatus"] == "NEW"}
    # Read only: the exchange holds what the dead attempt left, nothing placed or cancelled.
    assert armed == {client_order_id(i, r) for i, r in (("pos", "sl"), ("pos", "tp"), ("half-mod", "sl"))}
    assert result.status is ResultStatus.FAILED and result.error is not None
    assert result.error.code == "POISON_MESSAGE"
    message = result.error.message
    assert "partly made" in message and "1 of 2 legs" in message, message
    assert f"not armed: {client_order_id('half-mod', 'tp')}" in message, message
    assert client_order_id("pos", "sl") in message and client_order_id("pos", "tp") in message, message
    # P3: a leg it asked for is missing, so never "protected"; the position is named.
    assert result.protection is ProtectionState.UNPROTECTED
    assert result.quantity == Decimal(QUANTITY[SYMBOL])
    assert result.legs_after is not None and {leg.client_algo_id for leg in result.legs_after} == armed
