"""A poison intent whose one read of the exchange fails while the process lives (P5).

A CLOSE whose dead attempts filled its close order, its repair dead too (the idempotency record
says so, as in ``test_poison_survey.py``), is answered from one read-only lookup of the exchange
under its ids. Here every order lookup of the simulator answers 503 while that lookup runs (the
exchange cannot be read: an outage, or load). A lookup that raised is not a process that died at
it: answering then "without the exchange" left the result's ``executed_quantity`` empty while the
exchange had filled the close (a result saying less than happened). The lookup is tried again
once the exchange answers, and the result names what the exchange filled, counted from the
simulator's own order history.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from quantum_exec.contracts import ResultStatus
from quantum_exec.core.ids import client_order_id
from reliability.adversary import QUANTITY, promises, signed
from reliability.harness import Rig
from support.waiting import poll_until

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

MAX_ATTEMPTS = 5
SYMBOL = "XRPUSDT"


@pytest.mark.timeout(150)
def test_a_poison_close_whose_lookup_fails_is_answered_with_what_filled_once_readable(
    tmp_path: Path,
) -> None:
    intent_id = "poison-unread"
    with Rig(tmp_path) as rig:
        # A position (anyone's entry), then the dead attempts' close order, filled.
        for side, cid, extra in (
            ("BUY", "poison-unread-open", {}),
            ("SELL", client_order_id(intent_id, "close"), {"reduceOnly": "true"}),
        ):
            params = {"symbol": SYMBOL, "side": side, "type": "MARKET", "quantity": QUANTITY[SYMBOL]}
            signed(rig.sim, "POST", "/fapi/v1/order", {**params, **extra, "newClientOrderId": cid})
        before = rig.sim.state()
        rig.streams.client.hset(
            f"{rig.names.key_prefix}:idem:{intent_id}",
            mapping={"state": "in_flight", "attempts": MAX_ATTEMPTS, "repair": 1},
        )
        # Every order lookup fails until the fault is lifted: the exchange cannot be read.
        rig.sim.faults([{"kind": "unavailable", "method": "GET", "path": "/fapi/v1/order"}])
        intents = {intent_id: {"intent_id": intent_id, "symbol": SYMBOL, "side": "CLOSE"}}
        rig.streams.publish_many(list(intents.values()))
        service = rig.service("poison-u", max_attempts=MAX_ATTEMPTS, intent_ttl_s=600).start()
        failed = poll_until(lambda: '"intent.poison_lookup_failed"' in service.tail(1_000_000), 60)
        assert failed, "the lookup never ran into the fault"
        rig.sim.faults([])
        [result] = rig.streams.wait_answered({intent_id}, 60)
        assert poll_until(lambda: rig.streams.pending() == 0, 5)
        assert service.terminate() == 0
        after = rig.sim.state()

    verdict = promises(intents, [result], after, {})
    assert verdict.violations == {}, verdict.violations
    assert result.status is ResultStatus.FAILED
    assert result.error is not None and result.error.code == "POISON_MESSAGE", result.error
    assert result.executed_quantity == Decimal(QUANTITY[SYMBOL]), result
    # Read only: nothing was sent.
    assert len(after["orders"]) == len(before["orders"])
    assert len(after["algoOrders"]) == len(before["algoOrders"])
