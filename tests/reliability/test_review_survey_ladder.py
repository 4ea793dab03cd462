"""Adversarial review (P3): a poison intent with a take-profit ladder answered from one read of the
exchange must not say ``protected`` when the ladder's levels are not armed there.

The survey (``execution/survey.py``) counts the legs asked for from ``stop_loss`` and
``take_profit`` only, and looks the targets up under the single target's ids only. A ladder
(``take_profits``) is neither: its levels (``tp_level_id``) are never looked up and never
counted. So an entry that filled, whose dead attempts armed the stop but none of the levels, is
answered ``protected``; a ladder with no stop is answered ``protected`` with nothing armed at all.
What the dead attempts left is made here under the intent's client ids by a signed client, as in
``test_poison_survey.py``; the promises are counted from the simulator's own orders.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id, tp_level_id
from reliability.adversary import QUANTITY, TICK, promises, signed
from reliability.harness import Rig

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

MAX_ATTEMPTS = 5
LADDER = [{"pct": "1", "size_pct": 50}, {"pct": "2", "size_pct": 50}]


def _price(symbol: str, value: Decimal) -> str:
    return str(value.quantize(Decimal(TICK[symbol])))


def _filled_entry(rig: Rig, symbol: str, intent_id: str) -> None:
    """The dead attempt's MARKET entry, filled on the exchange under the intent's entry id."""
    signed(
        rig.sim,
        "POST",
        "/fapi/v1/order",
        {
            "symbol": symbol,
            "side": "BUY",
            "type": "MARKET",
            "quantity": QUANTITY[symbol],
            "newClientOrderId": client_order_id(intent_id, "entry"),
        },
    )


def _stop(rig: Rig, symbol: str, intent_id: str, trigger: Decimal) -> None:
    """The dead attempt's stop, armed (it died before the ladder's levels)."""
    signed(
        rig.sim,
        "POST",
        "/fapi/v1/algoOrder",
        {
            "symbol": symbol,
            "algoType": "CONDITIONAL",
            "side": "SELL",
            "type": "STOP_MARKET",
            "triggerPrice": _price(symbol, trigger),
            "closePosition": "true",
            "clientAlgoId": client_order_id(intent_id, "sl"),
        },
    )


@pytest.mark.timeout(180)
def test_a_poison_ladder_entry_with_no_level_armed_is_not_answered_protected(tmp_path: Path) -> None:
    with Rig(tmp_path) as rig:
        marks = {s: Decimal(rig.sim.state()["markPrices"][s]) for s in QUANTITY}
        intents: dict[str, dict[str, Any]] = {
            # A stop and a ladder: the stop armed, no level.
            "poison-ladder-sl": {
                "intent_id": "poison-ladder-sl",
                "symbol": "BTCUSDT",
                "side": "BUY",
                "quantity": QUANTITY["BTCUSDT"],
                "stop_loss": _price("BTCUSDT", marks["BTCUSDT"] * Decimal("0.97")),
                "take_profits": LADDER,
            },
            # A ladder alone: nothing armed at all.
            "poison-ladder-only": {
                "intent_id": "poison-ladder-only",
                "symbol": "ETHUSDT",
                "side": "BUY",
                "quantity": QUANTITY["ETHUSDT"],
                "take_profits": LADDER,
            },
        }
        _filled_entry(rig, "BTCUSDT", "poison-ladder-sl")
        _stop(rig, "BTCUSDT", "poison-ladder-sl", marks["BTCUSDT"] * Decimal("0.97"))
        _filled_entry(rig, "ETHUSDT", "poison-ladder-only")
        for intent_id in intents:
            rig.streams.client.hset(
                f"{rig.names.key_prefix}:idem:{intent_id}",
                mapping={"state": "in_flight", "attempts": MAX_ATTEMPTS, "repair": 1},
            )
        rig.streams.publish_many(list(intents.values()))
        service = rig.service("poison-ladder", max_attempts=MAX_ATTEMPTS, intent_ttl_s=600).start()
        results = rig.streams.wait_answered(set(intents), 60)
        assert service.terminate() == 0
        after = rig.sim.state()

    by_id = {r.intent_id: r for r in results}
    assert all(r.status is ResultStatus.FAILED for r in results), [r.status for r in results]
    assert all(r.error is not None and r.error.code == "POISON_MESSAGE" for r in results)
    # The exchange: both entries filled, no ladder level of either intent exists.
    level_ids = {tp_level_id(i, n) for i in intents for n in (1, 2)}
    assert not [a for a in after["algoOrders"] if a["clientAlgoId"] in level_ids]
    for intent_id in intents:
        assert by_id[intent_id].executed_quantity == Decimal(QUANTITY[intents[intent_id]["symbol"]])
    # P3: "protected" only when every leg asked for is armed there; no target is, for either.
    said = {i: by_id[i].protection for i in intents}
    assert ProtectionState.PROTECTED not in said.values(), said
    verdict = promises(intents, results, after, {})
    assert verdict.violations == {}, verdict.violations
