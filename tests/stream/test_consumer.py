"""IntentConsumer over a real Redis: answers, dead letters, duplicates, poison, retries, claims."""

from __future__ import annotations

import asyncio
import itertools
import random
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio as aioredis

from quantum_exec.contracts import ErrorSource, ExecutionResult, ProtectionState, ResultError, ResultStatus
from quantum_exec.core.errors import UnknownOutcomeError
from quantum_exec.ops import logs, metrics
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]


def _intent(symbol: str = "BTCUSDT", **extra: Any) -> dict[str, Any]:
    return {"symbol": symbol, "side": "BUY", "position_size_usd": 100, **extra}


def _sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels or None) or 0.0


async def test_valid_intents_are_executed_and_answered(kit: Any, handler_cls: Any) -> None:
    handler = handler_cls()
    ids = [await kit.publish(_intent("BTCUSDT", intent_id=f"i-{n}")) for n in range(3)]
    await kit.consumer(handler)
    results = await kit.wait_results(3)
    assert [r.stream_id for r in results] == ids
    assert [r.intent_id for r in results] == ["i-0", "i-1", "i-2"]
    assert all(r.status is ResultStatus.FILLED for r in results)
    assert [c.stream_id for c in handler.calls] == ids
    assert not any(c.resume for c in handler.calls)


async def test_undecodable_entries_are_dead_lettered_and_answered(kit: Any, handler_cls: Any) -> None:
    before = _sample("quantum_exec_dead_letters_total", reason="INVALID_PAYLOAD")
    bad_json = await kit.publish_raw({"event_type": "trade.intent", "payload": "{not json"})
    no_payload = await kit.publish_raw({"foo": "bar"})
    handler = handler_cls()
    await kit.consumer(handler)
    results = {r.stream_id: r for r in await kit.wait_results(2)}
    assert set(results) == {bad_json, no_payload}
    for stream_id, result in results.items():
        assert result.status is ResultStatus.REJECTED
        assert result.intent_id == stream_id
        assert result.error is not None
        assert result.error.code == "INVALID_PAYLOAD"
        assert result.error.source is ErrorSource.VALIDATION
    letters = await kit.dead_letters()
    assert {f[b"stream_id"].decode() for f in letters} == {bad_json, no_payload}
    assert all(f[b"reason"] == b"INVALID_PAYLOAD" for f in letters)
    assert any(f.get(b"orig.payload") == b"{not json" for f in letters)
    assert handler.calls == []
    assert _sample("quantum_exec_dead_letters_total", reason="INVALID_PAYLOAD") == before + 2


async def test_invalid_intent_is_rejected_without_execution(kit: Any, handler_cls: Any) -> None:
    stream_id = await kit.publish({"symbol": "BTCUSDT", "side": "HOLD", "intent_id": "bad-1"})
    handler = handler_cls()
    await kit.consumer(handler)
    [result] = await kit.wait_results(1)
    assert result.stream_id == stream_id
    assert result.intent_id == "bad-1"
    assert result.status is ResultStatus.REJECTED
    assert result.error is not None and result.error.source is ErrorSource.VALIDATION
    assert "side" in result.error.message
    assert await kit.dead_letters() == []
    assert handler.calls == []


async def test_duplicate_intent_is_executed_once(kit: Any, handler_cls: Any) -> None:
    before = _sample("quantum_exec_duplicate_intents_total")
    first = await kit.publish(_intent(intent_id="dup-1"))
    await kit.publish(_intent(intent_id="dup-1"))
    other = await kit.publish(_intent(intent_id="dup-2"))
    handler = handler_cls()
    await kit.consumer(handler)
    await kit.wait_results(2)
    # The duplicate is acked without a second result: wait for the whole group to settle.
    results = await kit.wait_results(2)
    assert [r.stream_id for r in results] == [first, other]
    assert [c.intent_id for c in handler.calls] == ["dup-1", "dup-2"]
    assert _sample("quantum_exec_duplicate_intents_total") == before + 1


async def _deliver_to_ghost(kit: Any, times: int) -> None:
    """Deliver every entry to consumer 'ghost' ``times`` times without acking (a crashing consumer)."""
    stream, group = kit.names["intent_stream"], kit.names["consumer_group"]
    await kit.redis.xgroup_create(stream, group, id="0", mkstream=True)
    await kit.redis.xreadgroup(group, "ghost", {stream: ">"}, count=100)
    for _ in range(times - 1):
        await kit.redis.xreadgroup(group, "ghost", {stream: "0"}, count=100)


async def test_entry_delivered_often_but_never_begun_is_not_poison(kit: Any, handler_cls: Any) -> None:
    """Deliveries alone (a crash loop before the entry's turn) never make an intent poison."""
    stream_id = await kit.publish(_intent(intent_id="innocent-1"))
    await _deliver_to_ghost(kit, times=4)
    handler = handler_cls()
    await kit.consumer(handler, consumer_name="ghost", max_deliveries=2, max_attempts=2)
    [result] = await kit.wait_results(1)
    assert result.stream_id == stream_id and result.status is ResultStatus.FILLED
    assert await kit.dead_letters() == []
    # Not poison; looked up first all the same: a failover may have lost its begin record.
    assert [(c.resume, c.repair) for c in handler.calls] == [(True, False)]


async def _died_attempts(kit: Any, intent_id: str, attempts: int, **fields: Any) -> None:
    """The idempotency record earlier attempts leave when the process died while executing."""
    key = f"{kit.names['key_prefix']}:idem:{intent_id}"
    await kit.redis.hset(key, mapping={"state": "in_flight", "attempts": attempts, **fields})


async def test_poison_after_max_attempts_is_repaired_once_then_dead_lettered(
    kit: Any, handler_cls: Any
) -> None:
    stream_id = await kit.publish(_intent(intent_id="poison-1"))
    await _deliver_to_ghost(kit, times=1)
    await _died_attempts(kit, "poison-1", 3, fenced_at=0)
    handler = handler_cls()
    await kit.consumer(handler, consumer_name="ghost", max_attempts=3)
    [result] = await kit.wait_results(1)
    assert result.stream_id == stream_id and result.intent_id == "poison-1"
    assert [(c.resume, c.repair) for c in handler.calls] == [(True, True)]  # the repair ran once
    [letter] = await kit.dead_letters()
    assert letter[b"reason"] == b"POISON_MESSAGE"
    assert b"orig.payload" in letter
    assert await kit.redis.hget(f"{kit.names['key_prefix']}:idem:poison-1", "repair") == b"1"


async def test_repair_that_died_too_is_answered_unprotected_without_the_exchange(
    kit: Any, handler_cls: Any
) -> None:
    await kit.publish(_intent(intent_id="poison-2"))
    await _deliver_to_ghost(kit, times=1)
    await _died_attempts(kit, "poison-2", 3, repair=1)
    handler = handler_cls()
    await kit.consumer(handler, consumer_name="ghost", max_attempts=3)
    [result] = await kit.wait_results(1)
    assert result.status is ResultStatus.FAILED and result.protection is ProtectionState.UNPROTECTED
    assert result.error is not None and result.error.code == "POISON_MESSAGE"
    assert "may have opened a BTCUSDT position" in result.error.message
    assert handler.calls == []
    [letter] = await kit.dead_letters()
    assert letter[b"reason"] == b"POISON_MESSAGE"


async def test_a_poison_lookup_that_fails_is_tried_once_then_answered_without_the_exchange(
    kit: Any, handler_cls: Any
) -> None:
    """The read-only lookup that answers a poison intent whose repair died: marked begun before it
    runs (a process killed at it answers blind next time); one that fails for good (here a
    bug, not an exchange that cannot be read now) answers blind at once."""
    await kit.publish(_intent(intent_id="poison-3"))
    await _deliver_to_ghost(kit, times=1)
    await _died_attempts(kit, "poison-3", 3, repair=1)
    looked: list[str] = []

    async def failing_survey(intent: Any, stream_id: str, received_at: Any, *, attempt: Any) -> Any:
        looked.append(intent.intent_id)
        assert attempt.repair and attempt.resume
        assert await kit.redis.hget(f"{kit.names['key_prefix']}:idem:poison-3", "repair") == b"2"
        raise RuntimeError("exchange unreachable")

    handler = handler_cls()
    await kit.consumer(handler, consumer_name="ghost", max_attempts=3, survey=failing_survey)
    [result] = await kit.wait_results(1)
    assert looked == ["poison-3"] and handler.calls == []
    assert result.status is ResultStatus.FAILED and result.protection is ProtectionState.UNPROTECTED
    assert result.error is not None and result.error.code == "POISON_MESSAGE"
    assert "could not be read (RuntimeError: exchange unreachable)" in result.error.message
    [letter] = await kit.dead_letters()
    assert letter[b"reason"] == b"POISON_MESSAGE"


async def test_a_poison_lookup_that_cannot_read_the_exchange_now_is_tried_again(
    kit: Any, handler_cls: Any
) -> None:
    """A lookup that fails while the process lives (the exchange unreadable for now) is no death
    at it: answering blind would leave out what the dead attempts filled (P5). The entry stays
    pending and the lookup runs again; the one answer is what it read."""
    await kit.publish(_intent(intent_id="poison-4"))
    await _deliver_to_ghost(kit, times=1)
    await _died_attempts(kit, "poison-4", 3, repair=1)
    looked: list[str] = []

    async def flaky_survey(intent: Any, stream_id: str, received_at: Any, *, attempt: Any) -> Any:
        looked.append(intent.intent_id)
        if len(looked) == 1:
            raise UnknownOutcomeError("order lookup keeps failing: Service Unavailable.")
        return ExecutionResult(
            symbol=intent.symbol,
            status=ResultStatus.FAILED,
            intent_id=intent.intent_id,
            stream_id=stream_id,
            executed_quantity=Decimal("0.01"),
            error=ResultError(code="POISON_MESSAGE", source=ErrorSource.INTERNAL, message="read: filled"),
        )

    handler = handler_cls()
    await kit.consumer(handler, consumer_name="ghost", max_attempts=3, survey=flaky_survey)
    [result] = await kit.wait_results(1)
    assert looked == ["poison-4", "poison-4"] and handler.calls == []
    assert result.executed_quantity == Decimal("0.01"), result
    assert result.error is not None and result.error.message == "read: filled"
    assert len(await kit.results()) == 1


@pytest.mark.parametrize("sends_order", [False, True])
async def test_a_resume_counts_as_an_attempt_only_when_it_sends(
    kit: Any, handler_cls: Any, sends_order: bool
) -> None:
    await kit.publish(_intent(intent_id=f"resume-{sends_order}"))
    await _deliver_to_ghost(kit, times=1)
    await _died_attempts(kit, f"resume-{sends_order}", 1, fenced_at=0)
    handler = handler_cls(sends_order=sends_order)
    await kit.consumer(handler, consumer_name="ghost", max_attempts=3)
    [result] = await kit.wait_results(1)
    assert result.status is ResultStatus.FILLED and handler.calls[0].resume
    attempts = await kit.redis.hget(f"{kit.names['key_prefix']}:idem:resume-{sends_order}", "attempts")
    assert attempts == (b"2" if sends_order else b"1")


async def test_reused_intent_id_with_another_intent_is_dead_lettered(kit: Any, handler_cls: Any) -> None:
    handler = handler_cls()
    await kit.consumer(handler)
    await kit.publish(_intent(intent_id="same-id"))
    [first] = await kit.wait_results(1)
    before = _sample("quantum_exec_intent_id_conflicts_total")
    other = await kit.publish({**_intent(intent_id="same-id"), "position_size_usd": 999})
    await kit.wait_until(lambda: _has_dead_letter(kit), 10, "the conflicting intent dead-lettered")
    [letter] = await kit.dead_letters()
    assert letter[b"reason"] == b"INTENT_ID_CONFLICT" and letter[b"stream_id"] == other.encode()
    assert b"already used for a different intent" in letter[b"message"]
    assert [r.stream_id for r in await kit.results()] == [first.stream_id]  # the first one's result stands
    assert len(handler.calls) == 1
    assert _sample("quantum_exec_intent_id_conflicts_total") == before + 1
    assert await kit.pending() == 0


async def _has_dead_letter(kit: Any) -> bool:
    return bool(await kit.dead_letters())


async def test_handler_exception_is_retried_after_claim_idle(kit: Any, handler_cls: Any) -> None:
    handler = handler_cls(fail_times=1)
    stream_id = await kit.publish(_intent(intent_id="flaky-1"))
    await kit.consumer(handler)
    [result] = await kit.wait_results(1, timeout_s=15)
    assert result.stream_id == stream_id and result.status is ResultStatus.FILLED
    assert [c.stream_id for c in handler.calls] == [stream_id, stream_id]
    assert handler.calls[1].resume  # the first attempt may have placed orders


async def test_autoclaim_takes_over_from_dead_consumer(kit: Any, handler_cls: Any) -> None:
    deleted_before = _sample("quantum_exec_claim_deleted_total")
    claimed_before = _sample("quantum_exec_claimed_total")
    ids = [await kit.publish(_intent("ETHUSDT", intent_id=f"orphan-{n}")) for n in range(3)]
    await _deliver_to_ghost(kit, times=1)
    # Deleted while pending: reported by XAUTOCLAIM (>= 7) or found in our pending list (6.2).
    await kit.redis.xdel(kit.names["intent_stream"], ids[1])
    handler = handler_cls()
    await kit.consumer(handler, consumer_name="rescuer")
    results = await kit.wait_results(2, timeout_s=15)
    assert [r.stream_id for r in results] == [ids[0], ids[2]]
    # Delivered twice and no in-flight mark: not resumed from a record, but looked up first all
    # the same (a failover before the rescuer connected may have lost the ghost's record).
    assert handler.calls and all(c.resume and not c.repair for c in handler.calls)
    assert _sample("quantum_exec_claimed_total") >= claimed_before + 2
    assert _sample("quantum_exec_claim_deleted_total") == deleted_before + 1


async def test_a_consumer_full_of_entries_waiting_on_a_dead_ones_still_claims_them(
    kit: Any, handler_cls: Any
) -> None:
    """Found by the scaling bench: the survivor of a SIGKILL had read as many entries as it may
    hold, all waiting for their symbol's turn behind the dead consumer's older entries, and so
    never claimed those: it waited forever."""
    older = [await kit.publish(_intent("ETHUSDT", intent_id=f"dead-{n}")) for n in range(2)]
    await _deliver_to_ghost(kit, times=1)
    newer = [await kit.publish(_intent("ETHUSDT", intent_id=f"behind-{n}")) for n in range(4)]
    handler = handler_cls()
    # May hold max_concurrency + read_count = 2 entries: both read at once, both wait on 'ghost'.
    await kit.consumer(handler, consumer_name="survivor", max_concurrency=1, read_count=1)
    results = await kit.wait_results(6, timeout_s=15)
    assert [r.stream_id for r in results] == older + newer


async def test_lag_and_pending_gauges(kit: Any, handler_cls: Any) -> None:
    gate = asyncio.Event()
    handler = handler_cls(gate=gate)
    for n in range(4):
        await kit.publish(_intent("BTCUSDT", intent_id=f"g-{n}"))
    # read_count + max_concurrency bounds what one consumer holds: 2 of 4 stay undelivered.
    await kit.consumer(handler, read_count=1, max_concurrency=1)
    await asyncio.wait_for(handler.started.wait(), 5)
    await kit.wait_until(
        lambda: (
            _sample("quantum_exec_pending_entries") == 2 and _sample("quantum_exec_consumer_lag_entries") == 2
        ),
        5,
        "pending=2 lag=2",
    )
    gate.set()
    await kit.wait_results(4)
    await kit.wait_until(
        lambda: (
            _sample("quantum_exec_pending_entries") == 0 and _sample("quantum_exec_consumer_lag_entries") == 0
        ),
        5,
        "pending=0 lag=0",
    )


async def test_per_symbol_order_with_three_consumers(kit: Any, handler_cls: Any, redis_url: str) -> None:
    rng = random.Random(7)
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
    published: list[tuple[str, str]] = []
    for n in range(48):
        symbol = rng.choice(symbols)
        published.append((await kit.publish(_intent(symbol, intent_id=f"o-{n}")), symbol))
    clients = [aioredis.Redis.from_url(redis_url, protocol=2) for _ in range(3)]
    handlers = [handler_cls(name=f"c{n}", delay_s=0.01) for n in range(3)]
    try:
        for n, (client, handler) in enumerate(zip(clients, handlers, strict=True)):
            await kit.consumer(handler, client=client, consumer_name=f"member-{n}", read_count=4)
        results = await kit.wait_results(len(published), timeout_s=25)
    finally:
        for consumer in kit.consumers:
            await consumer.stop()
        for client in clients:
            await client.aclose()
    calls = [c for h in handlers for c in h.calls]
    assert sorted(c.stream_id for c in calls) == sorted(sid for sid, _ in published)  # each once
    assert len(results) == len(published)
    for symbol in symbols:
        mine = sorted((c for c in calls if c.symbol == symbol), key=lambda c: c.started)
        expected = [sid for sid, s in published if s == symbol]
        assert [c.stream_id for c in mine] == expected, f"{symbol} out of order"
        for earlier, later in itertools.pairwise(mine):
            assert earlier.finished is not None and earlier.finished <= later.started, f"{symbol} overlapped"
    overlapping = any(
        a.symbol != b.symbol and a.started < (b.finished or 0) and b.started < (a.finished or 0)
        for a in calls
        for b in calls
    )
    assert overlapping, "different symbols never ran concurrently"
    assert len({c.consumer for c in calls}) >= 2, "one consumer did all the work"


async def test_a_secret_echoed_by_a_producer_is_not_published(kit: Any, handler_cls: Any) -> None:
    secret = "Echoed-Secret-Value-0123456789"
    logs._REDACTOR.set_secrets([secret])
    try:
        await kit.consumer(handler_cls())
        await kit.publish(_intent(intent_id="leaky-1", note=f"key {secret.upper()}"))
        await kit.publish({"intent_id": "leaky-2", "symbol": "BTCUSDT", "side": "BUY", "size": secret})
        results = await kit.wait_results(2)
        published = b""
        for stream in ("result_stream", "dlq_stream"):
            for _sid, fields in await kit.redis.xrange(kit.names[stream]):
                published += b"".join(fields.values())
        assert len(results) == 2
        assert secret.lower().encode() not in published.lower()
        assert b"[REDACTED]" in published
    finally:
        logs._REDACTOR.set_secrets(())


async def test_answered_entries_leave_the_symbol_cache(kit: Any, handler_cls: Any) -> None:
    """The order check's cache of entry symbols keeps only what may still be pending: it grew
    with every intent (to 100,000 entries, ~20 MB) before."""
    handler = handler_cls()
    ids = [await kit.publish(_intent(f"S{n % 3}USDT", intent_id=f"cache-{n}")) for n in range(12)]
    bad = await kit.publish_raw({"event_type": "trade.intent", "payload": "{not json"})
    consumer = await kit.consumer(handler)
    await kit.wait_results(13)
    remembered = consumer._order._symbols
    # Answered first, forgotten right after (the worker's last step): wait for it, bounded.
    await wait_for(lambda: not [sid for sid in [*ids, bad] if sid in remembered], 5, "the cache to forget")
