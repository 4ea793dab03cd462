"""An intent_id re-used while its intent is in flight: the first intent's record is not touched.

A whole service on the simulator: a LIMIT entry rests on the book (its intent in flight, its
record held by its attempt) while an invalid payload under the same intent_id arrives. The
invalid entry is dead-lettered as INTENT_ID_CONFLICT; the resting intent's real result is the one
result published for the intent_id once it fills.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus, encode_intent_fields
from quantum_exec.contracts.result import decode_result_fields
from quantum_exec.core.ids import client_order_id
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_invalid_payload_reusing_an_in_flight_intent_id_leaves_the_real_result_standing(
    desk: Desk,
) -> None:
    await desk.service()
    names = desk.names
    mark = desk.sim.engine.mark("BTCUSDT")
    price = (mark * Decimal("0.995")).quantize(Decimal("0.1"))
    await desk.publish(
        intent_id="reuse-1",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        order_type="LIMIT",
        price=str(price),
        stop_loss=str((mark * Decimal("0.97")).quantize(Decimal("0.1"))),
        take_profit=str((mark * Decimal("1.03")).quantize(Decimal("0.1"))),
    )
    entry_id = client_order_id("reuse-1", "entry")

    def resting() -> list[dict[str, Any]]:
        return [
            o for o in desk.sim.state()["orders"] if o["clientOrderId"] == entry_id and o["status"] == "NEW"
        ]

    await wait_for(resting, 10, "the LIMIT resting on the book")
    invalid = {"intent_id": "reuse-1", "symbol": "BTCUSDT", "side": "HOLD", "quantity": "0.010"}
    fields = encode_intent_fields(invalid, "test")
    invalid_id = (await desk.redis.xadd(names["intent_stream"], fields)).decode()  # type: ignore[arg-type]

    async def invalid_answered() -> bool:
        [group] = await desk.redis.xinfo_groups(names["intent_stream"])
        pending = await desk.redis.xpending_range(
            names["intent_stream"], names["consumer_group"], min=invalid_id, max=invalid_id, count=1
        )
        return group["last-delivered-id"].decode() == invalid_id and not pending

    await wait_for(invalid_answered, 10, "the invalid entry answered")
    assert resting(), "the resting LIMIT was touched by the invalid entry"
    desk.sim.set_mark_price("BTCUSDT", price - Decimal("10"))

    async def settled() -> bool:
        info = await desk.redis.xpending(names["intent_stream"], names["consumer_group"])
        return int(info["pending"]) == 0

    await wait_for(settled, 20, "the resting intent answered")
    rows = await desk.redis.xrange(names["result_stream"])
    results = [decode_result_fields(fields) for _sid, fields in rows]
    assert [r.intent_id for r in results] == ["reuse-1"], [(r.status, r.error) for r in results]
    [result] = results
    # The real outcome, as the exchange holds it.
    [order] = [o for o in desk.sim.state()["orders"] if o["clientOrderId"] == entry_id]
    assert order["status"] == "FILLED"
    assert result.status is ResultStatus.FILLED and result.order_id == order["orderId"]
    assert result.executed_quantity == Decimal(order["executedQty"]) == Decimal("0.010")
    assert result.protection is ProtectionState.PROTECTED
    assert {a["orderType"] for a in desk.open_algos("BTCUSDT")} == {"STOP_MARKET", "TAKE_PROFIT_MARKET"}
    assert desk.position("BTCUSDT") == Decimal("0.010")
    # The invalid entry answered on the dead-letter stream, naming the conflict.
    letters = [fields for _sid, fields in await desk.redis.xrange(names["dlq_stream"])]
    assert [(f[b"stream_id"].decode(), f[b"reason"]) for f in letters] == [
        (invalid_id, b"INTENT_ID_CONFLICT")
    ]
