"""The CLOSE signal in Redis (``<prefix>:close:<symbol>``, stream/signals.py) is written only for a
CLOSE that another instance holds up: its working entry of the symbol (a resting LIMIT) looks for
it there and ends early. A CLOSE that takes the symbol's lease at once, or waits only behind this
instance's own entries, costs no round trip for it (issue #29).

Real services on the simulator and a real Redis. To have instance B read what is published next,
instance A's read loop is stopped (its working entry and its account follower go on).
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from quantum_exec.app.service import Service
from quantum_exec.contracts import ResultStatus
from quantum_exec.core.aio import cancel_task
from quantum_exec.core.ids import client_order_id
from quantum_exec.stream.store import Keys
from support.desk import Desk
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


def _signal_key(desk: Desk, symbol: str) -> str:
    return Keys(desk.settings()).close_signal(symbol)


async def _resting_limit(desk: Desk, intent_id: str, symbol: str) -> None:
    """A BUY LIMIT below the market, resting for 200 s unless a CLOSE ends it."""
    mark = desk.sim.engine.mark(symbol)
    await desk.publish(
        intent_id=intent_id,
        symbol=symbol,
        side="BUY",
        quantity="0.01",
        order_type="LIMIT",
        price=str((mark * Decimal("0.97")).quantize(Decimal("0.1"))),
        expire_after_s=200,
    )
    entry_id = client_order_id(intent_id, "entry")
    await wait_for(
        lambda: any(o["clientOrderId"] == entry_id for o in desk.sim.state()["orders"]), 10, "the LIMIT"
    )


async def _stop_reading(service: Service) -> None:
    assert service.consumer is not None
    await cancel_task(service.consumer._reader)


async def test_a_close_that_runs_at_once_writes_no_signal_in_redis(desk: Desk) -> None:
    await desk.service()
    await desk.publish(intent_id="open", symbol="BTCUSDT", side="BUY", quantity="0.01", stop_loss_pct="3")
    await desk.publish(intent_id="close", symbol="BTCUSDT", side="CLOSE")  # behind the open, here
    opened = await desk.result("open")
    closed = await desk.result("close")
    assert opened.status is ResultStatus.FILLED, opened.error
    assert closed.status is ResultStatus.FILLED and desk.position("BTCUSDT") == 0, closed.error
    assert await desk.redis.get(_signal_key(desk, "BTCUSDT")) is None


async def test_a_close_whose_lease_another_owner_holds_writes_its_signal(desk: Desk) -> None:
    await desk.service()
    lease = Keys(desk.settings()).lease("ETHUSDT")
    await desk.redis.set(lease, "1|another-instance", px=60_000)
    await desk.publish(intent_id="held-close", symbol="ETHUSDT", side="CLOSE")

    async def signalled() -> bool:
        return await desk.redis.get(_signal_key(desk, "ETHUSDT")) is not None

    await wait_for(signalled, 10, "the CLOSE's signal in Redis")
    assert "held-close" not in await desk.results()
    await desk.redis.delete(lease)  # the other owner lets go: the CLOSE runs
    closed = await desk.result("held-close")
    assert closed.status is ResultStatus.REJECTED and closed.error is not None
    assert closed.error.code == "NO_POSITION"


@pytest.mark.parametrize("behind_an_open", [False, True], ids=["close-alone", "close-behind-an-open"])
async def test_a_close_read_by_another_instance_ends_a_resting_limit_early(
    desk: Desk, behind_an_open: bool
) -> None:
    """B's CLOSE (or the open of the symbol B holds before it) finds A's LIMIT pending: the CLOSE's
    signal goes to Redis, and the LIMIT ends long before its 200 s."""
    first = await desk.service(consumer_name="instance-a")
    await _resting_limit(desk, "rest", "BTCUSDT")
    await _stop_reading(first)
    await desk.service(consumer_name="instance-b")
    if behind_an_open:
        await desk.publish(intent_id="open", symbol="BTCUSDT", side="BUY", quantity="0.01", stop_loss_pct="3")
    await desk.publish(intent_id="close", symbol="BTCUSDT", side="CLOSE")
    rest = await desk.result("rest", timeout_s=15)  # its remainder cancelled for the CLOSE
    assert rest.status is ResultStatus.FAILED and rest.error is not None
    assert rest.error.code == "ENTRY_EXPIRED"
    closed = await desk.result("close", timeout_s=15)
    if behind_an_open:
        assert (await desk.result("open")).status is ResultStatus.FILLED
        assert closed.status is ResultStatus.FILLED and desk.position("BTCUSDT") == 0, closed.error
    else:
        assert closed.status is ResultStatus.REJECTED and closed.error is not None
    assert await desk.redis.get(_signal_key(desk, "BTCUSDT")) is not None
