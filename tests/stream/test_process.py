"""The service as a real process: SIGTERM drains and exits 0; SIGKILL leaves work that the next
start of the same consumer name picks up from its own pending list."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from quantum_exec.contracts import ResultStatus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

WORKER = Path(__file__).with_name("proc_worker.py")


def _spawn(kit: Any, tmp_path: Path, *, delay_s: float, name: str = "proc-1") -> subprocess.Popen[bytes]:
    config = {
        **kit.names,
        "redis_url": kit.redis_url,
        "consumer_name": name,
        "block_ms": 100,
        "claim_idle_ms": 1000,
        "claim_interval_s": 0.1,
        "lease_ttl_ms": 3000,
        "shutdown_grace_s": 10.0,
        "watchdog": False,
        "events_path": str(tmp_path / "events.txt"),
        "delay_s": delay_s,
    }
    log = (tmp_path / f"{name}.log").open("ab")
    return subprocess.Popen([sys.executable, str(WORKER), orjson.dumps(config).decode()], stderr=log)


def _events(tmp_path: Path) -> list[str]:
    path = tmp_path / "events.txt"
    return path.read_text().splitlines() if path.exists() else []


async def _exit_code(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    return await asyncio.to_thread(proc.wait, timeout_s)


async def test_sigterm_drains_in_flight_and_exits_zero(kit: Any, tmp_path: Path) -> None:
    proc = _spawn(kit, tmp_path, delay_s=1.0)
    try:
        await kit.wait_until(lambda: "ready" in _events(tmp_path), 15, "worker ready")
        first = await kit.publish({"symbol": "BTCUSDT", "side": "BUY", "quantity": 1, "intent_id": "t-1"})
        second = await kit.publish({"symbol": "BTCUSDT", "side": "BUY", "quantity": 1, "intent_id": "t-2"})
        await kit.wait_until(lambda: f"started {first} 0" in _events(tmp_path), 10, "first intent started")
        proc.send_signal(signal.SIGTERM)
        assert await _exit_code(proc, 15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events = _events(tmp_path)
    assert f"finished {first}" in events  # the in-flight intent finished within the grace period
    assert not any(second in line for line in events)  # the next one was not started
    results = await kit.results()
    assert [(r.stream_id, r.status) for r in results] == [(first, ResultStatus.FILLED)]
    pending = await kit.redis.xpending_range(
        kit.names["intent_stream"], kit.names["consumer_group"], "-", "+", 10
    )
    pending_ids = [row["message_id"].decode() for row in pending]
    if pending_ids != [second]:
        # On a loaded machine SIGTERM can come before the second entry was even read: then it was
        # never delivered, which leaves it for the next consumer just the same.
        [group] = [
            g
            for g in await kit.redis.xinfo_groups(kit.names["intent_stream"])
            if g["name"].decode() == kit.names["consumer_group"]
        ]
        last = tuple(int(part) for part in group["last-delivered-id"].decode().split("-"))
        assert pending_ids == [] and last < tuple(int(part) for part in second.split("-")), (
            pending_ids,
            last,
        )


async def test_sigkill_mid_intent_is_reprocessed_from_own_pending(kit: Any, tmp_path: Path) -> None:
    proc = _spawn(kit, tmp_path, delay_s=60.0)
    try:
        stream_id = await kit.publish(
            {"symbol": "ETHUSDT", "side": "SELL", "quantity": 1, "intent_id": "k-1"}
        )
        await kit.wait_until(lambda: f"started {stream_id} 0" in _events(tmp_path), 15, "intent started")
        proc.kill()  # SIGKILL: no cleanup, the lease and the in-flight record stay behind
        await _exit_code(proc, 10)
        assert await kit.results() == []
        proc = _spawn(kit, tmp_path, delay_s=0.0)  # same consumer name, a fresh process
        [result] = await kit.wait_results(1, timeout_s=15)
        assert result.stream_id == stream_id and result.status is ResultStatus.FILLED
        # Resumed (the idempotency record was in flight), without waiting for the old lease to expire.
        assert f"started {stream_id} 1" in _events(tmp_path)
        proc.send_signal(signal.SIGTERM)
        assert await _exit_code(proc, 15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
