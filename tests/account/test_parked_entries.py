"""Working entries park off the consumer's slots; recovery after an unclean restart delays no other symbol.

Holes 15 and 16 of the order-core review (issue 24): after a SIGKILL the resumed intents ran one at
a time, so a LIMIT that filled right after the restart waited for its SL/TP behind another symbol's
resting LIMIT, and new intents on any symbol waited up to RECOVERY_WAIT_S behind the recovery.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.ids import client_order_id
from quantum_exec.ops import metrics
from support.desk import Desk
from support.killable import KillableService
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Well inside RECOVERY_WAIT_S (30 s) and the resting LIMIT's own bound (60 s): what waits behind
# either of them misses it.
PROMPT_S = 8.0


def _sample(name: str) -> float:
    return metrics.REGISTRY.get_sample_value(name) or 0.0


def _entry(desk: Desk, intent_id: str) -> dict[str, Any] | None:
    entry_id = client_order_id(intent_id, "entry")
    found = [o for o in desk.sim.state()["orders"] if o["clientOrderId"] == entry_id]
    return found[-1] if found else None


def _rests(desk: Desk, intent_id: str) -> bool:
    order = _entry(desk, intent_id)
    return order is not None and order["status"] == "NEW"


async def _limit(desk: Desk, intent_id: str, symbol: str) -> Decimal:
    """Publish a LIMIT BUY half a percent under the market (it rests); its price."""
    mark = desk.sim.engine.mark(symbol)
    tick = Decimal(desk.sim.engine.spec(symbol).tick_size)
    price = (mark * Decimal("0.995")).quantize(tick)
    await desk.publish(
        intent_id=intent_id,
        symbol=symbol,
        side="BUY",
        position_size_usd="100",
        leverage=2,
        order_type="LIMIT",
        price=str(price),
        expire_after_s=60,
        stop_loss_pct=3,
        take_profit_pct=3,
    )
    return price


async def _two_limits_resting_across_a_sigkill(desk: Desk, worker: KillableService) -> dict[str, Decimal]:
    """DOGEUSDT and DOTUSDT LIMITs resting when the service is killed, then a restart that is
    consuming again; the LIMITs' prices."""
    worker.spawn()
    await wait_for(lambda: worker.started() == 1, 30, "the service ready")
    prices = {
        "doge-rest": await _limit(desk, "doge-rest", "DOGEUSDT"),
        "dot-rest": await _limit(desk, "dot-rest", "DOTUSDT"),
    }
    await wait_for(lambda: _rests(desk, "doge-rest") and _rests(desk, "dot-rest"), 20, "both LIMITs resting")
    worker.kill()
    worker.spawn()
    await wait_for(lambda: worker.started() == 2, 30, "the service ready again")
    return prices


async def test_a_limit_that_fills_after_an_unclean_restart_is_protected_while_another_rests(
    desk: Desk, tmp_path: Path
) -> None:
    """Hole 15: the DOTUSDT fill waited behind the resting DOGEUSDT LIMIT (resumed intents ran
    one at a time), and its result said a few ms of latency."""
    worker = KillableService(desk, tmp_path, consumer_name="park-worker")
    try:
        published_at = datetime.now(UTC)
        prices = await _two_limits_resting_across_a_sigkill(desk, worker)
        desk.sim.set_mark_price("DOTUSDT", prices["dot-rest"] * Decimal("0.99"))
        filled_at = time.monotonic()
        await wait_for(lambda: _entry(desk, "dot-rest")["status"] == "FILLED", 10, "the DOTUSDT fill")  # type: ignore[index]
        await wait_for(lambda: len(desk.open_algos("DOTUSDT")) == 2, PROMPT_S, "the DOTUSDT fill's SL and TP")
        assert time.monotonic() - filled_at < PROMPT_S
        assert _rests(desk, "doge-rest"), "the DOGEUSDT LIMIT still rests"
        result = await desk.result("dot-rest", timeout_s=PROMPT_S)
    finally:
        worker.kill()
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert {a["orderType"] for a in desk.open_algos("DOTUSDT")} == {"STOP_MARKET", "TAKE_PROFIT_MARKET"}
    # The timings cover the whole intent across the restart, not only the last attempt.
    assert result.first_received_at is not None and result.total_ms is not None
    assert published_at <= result.first_received_at < result.received_at  # type: ignore[operator]
    assert result.completed_at is not None
    whole_ms = (result.completed_at - result.first_received_at).total_seconds() * 1000
    assert result.total_ms == pytest.approx(whole_ms, abs=1)
    assert result.latency_ms is not None and result.total_ms > result.latency_ms


async def test_a_new_intent_on_another_symbol_runs_at_once_after_an_unclean_restart(
    desk: Desk, tmp_path: Path
) -> None:
    """Hole 16: a new intent waited silently up to RECOVERY_WAIT_S for the resumed ones."""
    worker = KillableService(desk, tmp_path, consumer_name="park-worker")
    try:
        await _two_limits_resting_across_a_sigkill(desk, worker)
        sent_at = time.monotonic()
        await desk.publish(
            intent_id="eth-new",
            symbol="ETHUSDT",
            side="BUY",
            quantity="0.100",
            stop_loss_pct=3,
            take_profit_pct=3,
        )
        result = await desk.result("eth-new", timeout_s=PROMPT_S)
        took_s = time.monotonic() - sent_at
        assert _rests(desk, "doge-rest") and _rests(desk, "dot-rest")
    finally:
        worker.kill()
    assert took_s < PROMPT_S
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert desk.position("ETHUSDT") == Decimal("0.100")


async def test_resting_entries_hold_no_slot_and_no_read_capacity(desk: Desk) -> None:
    """One slot, one entry read at a time: two resting LIMITs, then a MARKET, all run at once."""
    await desk.service(max_concurrency=1, read_count=1, shutdown_grace_s=1)
    await _limit(desk, "doge-slot", "DOGEUSDT")
    await _limit(desk, "dot-slot", "DOTUSDT")
    await wait_for(
        lambda: _rests(desk, "doge-slot") and _rests(desk, "dot-slot"), PROMPT_S, "both LIMITs resting"
    )
    await desk.publish(intent_id="eth-slot", symbol="ETHUSDT", side="BUY", quantity="0.100", stop_loss_pct=3)
    result = await desk.result("eth-slot", timeout_s=PROMPT_S)
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert _rests(desk, "doge-slot") and _rests(desk, "dot-slot")
    prices = {"dot": Decimal(str(_entry(desk, "dot-slot")["price"]))}  # type: ignore[index]
    desk.sim.set_mark_price("DOTUSDT", prices["dot"] * Decimal("0.99"))
    await wait_for(lambda: len(desk.open_algos("DOTUSDT")) == 2, PROMPT_S, "the DOTUSDT fill's SL and TP")


async def test_a_fill_naked_past_the_bound_is_counted_and_shown_while_it_lasts(desk: Desk) -> None:
    """The other half of hole 15: nothing in metrics, alerts or the console showed naked minutes."""
    service = await desk.service(unprotected_alert_s=0.3)
    assert service.executor is not None
    exposure = service.executor.exposure
    counted_before = _sample("quantum_exec_unprotected_over_bound_total")
    # The legs take a second to be acknowledged: the fill stands naked past the 0.3 s bound.
    desk.sim.set_faults(
        faults=[{"kind": "latency", "ms": 1000, "method": "POST", "path": "/fapi/v1/algoOrder"}]
    )
    await desk.publish(
        intent_id="slow-legs",
        symbol="ETHUSDT",
        side="BUY",
        quantity="0.100",
        stop_loss_pct=3,
        take_profit_pct=3,
    )
    await wait_for(lambda: bool(exposure.status()["now"]), 10, "the naked fill on the console's status")
    [naked] = exposure.status()["now"]
    assert naked["symbol"] == "ETHUSDT" and naked["intent_id"] == "slow-legs" and naked["naked_s"] >= 0.3
    assert _sample("quantum_exec_unprotected_now") >= 1
    result = await desk.result("slow-legs")
    assert result.protection is ProtectionState.PROTECTED and len(desk.open_algos("ETHUSDT")) == 2
    assert _sample("quantum_exec_unprotected_over_bound_total") == counted_before + 1
    assert _sample("quantum_exec_unprotected_now") == 0
    assert exposure.status()["now"] == [] and exposure.status()["over_bound_total"] == 1


async def test_a_parked_limit_left_by_a_clean_stop_is_protected_at_once_by_another_instance(
    desk: Desk,
) -> None:
    """A clean stop (SIGTERM) cancels a parked entry after its grace and leaves it pending: another
    instance (a rolling restart, another host) must take it over at its next claim, not
    ``claim_idle_ms`` (a minute) later, or a fill in between waits that long for its SL/TP."""
    first = await desk.service(consumer_name="leaving", shutdown_grace_s=0.5)
    mark = desk.sim.engine.mark("BTCUSDT")
    price = (mark * Decimal("0.995")).quantize(Decimal("0.1"))
    await desk.publish(
        intent_id="left-resting",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        order_type="LIMIT",
        price=str(price),
        expire_after_s=120,
        stop_loss_pct="2",
        take_profit_pct="3",
    )
    await wait_for(lambda: _entry(desk, "left-resting") is not None, 10, "the LIMIT resting")
    await first.stop()
    desk.sim.set_mark_price("BTCUSDT", price - Decimal("10"))
    await wait_for(lambda: desk.position("BTCUSDT") == Decimal("0.010"), 5, "the LIMIT filled")
    filled_at = time.monotonic()
    await desk.service(consumer_name="arriving")
    await wait_for(lambda: len(desk.open_algos("BTCUSDT")) == 2, 60, "the SL/TP of the fill")
    naked_s = time.monotonic() - filled_at
    assert naked_s < PROMPT_S, f"the fill waited {naked_s:.1f} s for its SL/TP"
    result = await desk.result("left-resting")
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
