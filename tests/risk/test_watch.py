"""The lease holder's checks: the day's loss and drawdown against their limits (pure), and a
position too close to its liquidation price reduced on the simulator, each reduction published."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from quantum_exec.contracts import ResultStatus
from quantum_exec.exchange.wire import Position
from quantum_exec.risk.limits import Limits
from quantum_exec.risk.states import Request, TradingState
from quantum_exec.risk.watch import Day, day_breach, liq_distance_pct, uses
from support.desk import Desk
from support.waiting import wait_for


def _position(amount: str, mark: str, liquidation: str) -> Position:
    return Position(
        "BTCUSDT", "BOTH", Decimal(amount), Decimal(mark), 20, "ISOLATED", Decimal(mark),
        liquidation_price=Decimal(liquidation),
    )  # fmt: skip


def test_the_day_loss_and_the_drawdown_reach_their_limits() -> None:
    limits = Limits(max_daily_loss_usd=Decimal(100), max_drawdown_pct=Decimal(5))
    assert day_breach(limits, Day("d", Decimal(-60), Decimal("-39.99"))) is None
    assert day_breach(limits, Day("d", Decimal(-60), Decimal(-40))) == (
        "max_daily_loss_usd",
        Decimal(100),
        Decimal(100),
    )
    falling = Day("d", Decimal(0), Decimal(-10), equity=Decimal(950), peak=Decimal(1000))
    assert falling.drawdown_pct == Decimal(5)
    assert day_breach(limits, falling) == ("max_drawdown_pct", Decimal(5), Decimal(5))
    assert day_breach(Limits(), falling) is None  # every limit off


def test_liquidation_distance_and_the_use_of_each_limit() -> None:
    near = _position("0.010", "100", "96")
    assert liq_distance_pct(near) == Decimal(4)
    assert liq_distance_pct(_position("0.010", "100", "0")) is None  # no liquidation price
    limits = Limits(
        max_daily_loss_usd=Decimal(50),
        max_gross_notional_usd=Decimal(10),
        max_open_positions=4,
        min_liq_distance_pct=Decimal(2),
    )
    found = uses(limits, Day("d", Decimal(-20), Decimal(-5)), [near])
    assert found == {
        "max_daily_loss_usd": Decimal("0.5"),
        "max_gross_notional_usd": Decimal("0.1"),
        "max_open_positions": Decimal("0.25"),
        "min_liq_distance_pct": Decimal("0.5"),
    }


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_a_position_near_its_liquidation_is_reduced_and_each_step_published(desk: Desk) -> None:
    stream = f"{desk.names['intent_stream']}:risk"
    await desk.service(risk_stream=stream, risk_check_interval_s=0.1, max_leverage=50)
    await desk.publish(intent_id="lev-1", symbol="BTCUSDT", side="BUY", quantity="0.040", leverage=20)
    assert (await desk.result("lev-1")).status is ResultStatus.FILLED
    [row] = [p for p in desk.sim.state()["positions"] if p["symbol"] == "BTCUSDT"]
    mark, liquidation = Decimal(row["markPrice"]), Decimal(row["liquidationPrice"])
    distance = (mark - liquidation) / mark * 100
    assert 0 < distance < 10  # isolated at 20x: about 5 %
    service = desk.services[0]
    assert service.governor is not None
    # Switched on at run time, above the distance: the governor acts.
    await service.governor.store.set_limits({"min_liq_distance_pct": "10"}, [], "test")

    await wait_for(lambda: desk.position("BTCUSDT") == 0, 30, "the position reduced until closed")
    rows = await desk.redis.xrange(stream)
    events = [json.loads(f[b"payload"], parse_float=Decimal) for _sid, f in rows]
    reductions = [e for e in events if e["kind"] == "liquidation_reduce"]
    # Isolated, its liquidation price stays as it shrinks: two halvings, then a CLOSE.
    assert [e["round"] for e in reductions] == [1, 2, 3]
    assert [e["numbers"]["position_amount"] for e in reductions] == [
        Decimal("0.040"),
        Decimal("0.020"),
        Decimal("0.010"),
    ]
    assert reductions[0]["numbers"]["liquidation_price"] == liquidation
    assert "closed" in reductions[2]["reason"]
    for event in reductions:
        assert (await desk.result(event["intent_id"])).status is ResultStatus.FILLED
    # From the exchange: three reduce-only orders (the halves and the close), nothing else sent.
    reduce_only = [o for o in desk.sim.state()["orders"] if o["symbol"] == "BTCUSDT" and o.get("reduceOnly")]
    assert sorted(Decimal(o["executedQty"]) for o in reduce_only) == [
        Decimal("0.010"),
        Decimal("0.010"),
        Decimal("0.020"),
    ]


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_the_governors_own_reductions_run_while_halted(desk: Desk) -> None:
    """Known by id and digest (the one it published), the governor's reduce-only halvings pass the
    gate while HALTED, where a producer's reduce-only intent is refused."""
    stream = f"{desk.names['intent_stream']}:risk"
    await desk.service(risk_stream=stream, risk_check_interval_s=0.1, max_leverage=50)
    await desk.publish(intent_id="lev-1", symbol="BTCUSDT", side="BUY", quantity="0.040", leverage=20)
    assert (await desk.result("lev-1")).status is ResultStatus.FILLED
    governor = desk.services[0].governor
    assert governor is not None
    await governor.store.transition(Request(TradingState.HALTED, "test: halt", "operator:test"))
    await governor.store.set_limits({"min_liq_distance_pct": "10"}, [], "test")

    async def halved() -> bool:
        rows = await desk.redis.xrange(stream)
        events = [json.loads(f[b"payload"]) for _sid, f in rows]
        firsts = [e for e in events if e["kind"] == "liquidation_reduce" and e["round"] == 1]
        return bool(firsts) and firsts[0]["intent_id"] in await desk.results()

    await wait_for(halved, 30, "the first halving's result")
    rows = await desk.redis.xrange(stream)
    first = next(
        e for e in (json.loads(f[b"payload"]) for _sid, f in rows) if e["kind"] == "liquidation_reduce"
    )
    result = await desk.result(first["intent_id"])
    assert result.status is ResultStatus.FILLED and result.executed_quantity == Decimal("0.020"), result
