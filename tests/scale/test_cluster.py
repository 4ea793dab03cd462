"""Redis Cluster: a real three-master cluster, every key of the service in one hash-tagged slot.

End to end through ``QUANTUM_REDIS_URL=redis+cluster://<one node>``: intent in, result out, the
position protected; the stop fires, the live OCO cancels the target and the closed position is
published (the account lease, event claims and ledger scripts all run in the cluster too). An
untagged configuration is refused before anything connects.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from binance_sim import Simulator
from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.redis_client import connect
from quantum_exec.core.settings import Settings, hash_tag
from quantum_exec.risk.states import Request, TradingState
from support.desk import Desk
from support.redis_ha import ClusterSet, cluster_names
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterSet]:
    with ClusterSet() as started:
        yield started


@pytest.fixture
async def desk(sim: Simulator, cluster: ClusterSet) -> AsyncIterator[Desk]:
    names = cluster_names()
    connection = {"redis_url": cluster.url}
    desk = Desk(sim, connect(Settings(**names, **connection)), names, cluster.url, connection=connection)
    try:
        yield desk
    finally:
        await desk.close()


async def test_intent_to_protected_position_to_stop_in_a_three_master_cluster(desk: Desk) -> None:
    service = await desk.service()
    mark = desk.sim.engine.mark("BTCUSDT")
    await desk.publish(
        intent_id="cluster-1",
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss=str((mark * Decimal("0.98")).quantize(Decimal("0.1"))),
        take_profit=str((mark * Decimal("1.04")).quantize(Decimal("0.1"))),
    )
    result = await desk.result("cluster-1")
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert result.stop_loss is not None and result.take_profit is not None

    desk.sim.set_mark_price("BTCUSDT", Decimal(str(result.stop_loss.trigger_price)) * Decimal("0.999"))
    await wait_for(lambda: desk.algo_status(result.take_profit.client_algo_id) == "CANCELED", 5, "OCO")

    async def closed() -> bool:
        return any(e["kind"] == "closed" for e in await desk.events())

    await wait_for(closed, 10, "the closed position event")
    assert [e["kind"] for e in await desk.events()] == ["opened", "closed"]
    # The governor's scripts (state + its event + the account lease) run in the one slot too.
    assert service.governor is not None
    await service.governor.store.transition(Request(TradingState.HALTED, "cluster", "operator:test"))
    await desk.publish(intent_id="cluster-2", symbol="BTCUSDT", side="BUY", quantity="0.010")
    refused = await desk.result("cluster-2")
    assert refused.error is not None and refused.error.code == "TRADING_HALTED"
    assert await service.redis.xlen(desk.names["risk_stream"]) == 1
    # Every key the service wrote sits in the one slot of the tag, whichever node holds it.
    tag = hash_tag(desk.names["key_prefix"])
    written = [key async for key in service.redis.scan_iter(match=f"*{tag}*")]
    assert written and all(hash_tag(k.decode()) == tag for k in written)
    assert any(b":idem:" in k for k in written) and any(b":account:lease" in k for k in written)


def test_serve_refuses_an_untagged_cluster_configuration_saying_how_to_set_it(cluster: ClusterSet) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))}
    refused = subprocess.run(
        [str(Path(sys.executable).parent / "quantum-exec"), "serve"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**base, "QUANTUM_REDIS_URL": cluster.url, "QUANTUM_METRICS_PORT": "0"},
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    for setting in (
        "QUANTUM_INTENT_STREAM={quantum}:stream:trade.intent",
        "QUANTUM_RESULT_STREAM={quantum}:stream:execution.result",
        "QUANTUM_DLQ_STREAM={quantum}:stream:trade.intent.dlq",
        "QUANTUM_POSITION_STREAM={quantum}:stream:position.event",
        "QUANTUM_RISK_STREAM={quantum}:stream:risk.event",
        "QUANTUM_KEY_PREFIX={quantum}:exec",
    ):
        assert setting in refused.stderr
    # Refused before anything was created under the default names.
    assert not any(node.client.keys("quantum:*") for node in cluster.servers)
