"""The account's intent records on the order path: batched, never a read-then-drop per field."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from quantum_exec.account.record_batch import RecordBatch
from quantum_exec.contracts import ResultStatus
from support.desk import Desk

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RECORDS = b"account:records"


def _watch(desk: Desk, service: Any) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Record commands sent alone (task, command) and the record batch's pipelines (task, commands)."""
    account = service.account
    assert account is not None
    store = account.store
    alone: list[tuple[str, str]] = []
    queued: list[tuple[str, str]] = []
    original = store._redis.execute_command
    original_pipeline = store.batch._pipeline

    def task_name() -> str:
        task = asyncio.current_task()
        return task.get_name() if task else ""

    async def counting(*args: Any, **kwargs: Any) -> Any:
        if any(
            RECORDS in (a.encode() if isinstance(a, str) else a)
            for a in args[1:2]
            if isinstance(a, str | bytes)
        ):
            alone.append((task_name(), str(args[0])))
        return await original(*args, **kwargs)

    async def counting_pipeline(batch: list[Any]) -> Any:
        queued.append((task_name(), " ".join(str(c.args[0]) for c in batch)))
        return await original_pipeline(batch)

    store._redis.execute_command = counting
    store.batch._pipeline = counting_pipeline
    return alone, queued


async def test_an_open_and_a_close_send_their_records_in_the_batch_only(desk: Desk) -> None:
    service = await desk.service()
    alone, queued = _watch(desk, service)
    pipelines = service.account.store.batch.pipelines
    await desk.publish(intent_id="rt-open", symbol="ETHUSDT", side="BUY", quantity="0.2", stop_loss_pct="2")
    assert (await desk.result("rt-open")).status is ResultStatus.FILLED
    # The open: its record before the entry and once it filled, each one pipeline, nothing alone
    # (the second a script that writes it unless it is already "opened": as EVAL of its source).
    assert alone == []
    sent = " ".join(c for _t, c in queued).split()
    assert sent.count("HSET") == 1 and sent.count("EVAL") == 1 and sent.count("EVALSHA") == 0
    assert len(queued) == service.account.store.batch.pipelines - pipelines <= 2
    alone.clear()
    queued.clear()

    await desk.publish(intent_id="rt-close", symbol="ETHUSDT", side="CLOSE")
    assert (await desk.result("rt-close")).status is ResultStatus.FILLED
    # The CLOSE: its record, then the position's records dropped by one script: no read first, no
    # HDEL per record (the live OCO's read of the flat symbol and its one HDEL are off the path).
    assert [c for t, c in alone if not t.startswith("oco-")] == []
    sent = " ".join(c for _t, c in queued).split()
    # (The script as EVAL of its source: never a NOSCRIPT, never a keyless SCRIPT LOAD.)
    assert sent.count("EVAL") == 1 and sent.count("EVALSHA") == sent.count("SCRIPT") == 0
    assert sent.count("HSET") == 1 and sent.count("HDEL") <= 1
    assert not [r for r in await service.account.store.records_of("ETHUSDT") if r.opened]


async def test_records_queued_together_travel_in_one_pipeline_in_order(desk: Desk) -> None:
    batch = RecordBatch(desk.redis)
    key = "rt:batch"
    first = asyncio.ensure_future(batch.call("HSET", key, "a", "1"))
    await asyncio.sleep(0)  # the first is in flight: the rest gather behind it
    rest = [batch.call("HSET", key, "b", str(n)) for n in range(20)]
    read = batch.call("HGET", key, "b")
    answers = await asyncio.gather(first, *rest, read)
    assert answers[-1] == b"19"  # the read after the writes queued before it
    assert batch.pipelines == 2
    await batch.drained()
