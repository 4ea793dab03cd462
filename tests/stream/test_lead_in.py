"""The lead-in to the first order: the order check, the lease and the in-flight mark in one script."""

from __future__ import annotations

import asyncio
from typing import Any

from quantum_exec.contracts import encode_intent_fields
from quantum_exec.stream.store import BeginState, Older, Store
from support.waiting import wait_for


async def _deliver(kit: Any, store: Store, *symbols: str) -> list[str]:
    """Publish one intent per symbol and read them all into one consumer's pending list."""
    await kit.redis.xgroup_create(store.keys.intent_stream, store.keys.consumer_group, id="0", mkstream=True)
    ids = []
    for n, symbol in enumerate(symbols):
        payload = {"symbol": symbol, "side": "BUY", "position_size_usd": 100, "intent_id": f"lead-{n}"}
        ids.append(
            (await kit.redis.xadd(store.keys.intent_stream, encode_intent_fields(payload, "t"))).decode()
        )
    await kit.redis.xreadgroup(store.keys.consumer_group, "someone", {store.keys.intent_stream: ">"})
    return ids


async def test_an_older_pending_entry_is_returned_and_nothing_is_taken(kit: Any) -> None:
    store = Store(kit.redis, kit.settings())
    eth, btc = await _deliver(kit, store, "ETHUSDT", "BTCUSDT")

    found = await store.acquire_and_begin("BTCUSDT", "me", "k-btc", btc, "h-btc")

    assert found == Older([eth], complete=True)
    assert await kit.redis.get(store.keys.lease("BTCUSDT")) is None
    assert await kit.redis.exists(store.keys.idempotency("k-btc")) == 0


async def test_with_nothing_older_pending_one_script_takes_the_lease_and_begins(kit: Any) -> None:
    store = Store(kit.redis, kit.settings())
    eth, btc = await _deliver(kit, store, "ETHUSDT", "BTCUSDT")

    taken = await store.acquire_and_begin("ETHUSDT", "me", "k-eth", eth, "h-eth")

    assert taken is not None and not isinstance(taken, Older)
    lease, begun = taken
    assert begun.state is BeginState.NEW
    assert (await kit.redis.get(store.keys.lease("ETHUSDT"))).decode() == lease.value
    assert (await kit.redis.hget(store.keys.idempotency("k-eth"), "state")).decode() == "in_flight"
    # The older entry is of another symbol: once told, the caller skips the check.
    skipped = await store.acquire_and_begin("BTCUSDT", "me", "k-btc", btc, "h-btc", order_check=False)
    assert skipped is not None and not isinstance(skipped, Older)
    # Acked, the older entry no longer shows.
    await kit.redis.xack(store.keys.intent_stream, store.keys.consumer_group, eth)
    assert not isinstance(await store.acquire_and_begin("BTCUSDT", "me", "k-btc", btc, "h-btc"), Older)


async def test_a_quiet_stream_costs_one_redis_round_trip_before_the_handler(
    kit: Any, handler_cls: Any
) -> None:
    """Between the entry's delivery and the executor, its symbol worker sends one command."""
    sent: list[tuple[str, str]] = []
    original = kit.redis.execute_command

    async def counting(*args: Any, **kwargs: Any) -> Any:
        task = asyncio.current_task()
        sent.append((task.get_name() if task else "", str(args[0])))
        return await original(*args, **kwargs)

    kit.redis.execute_command = counting
    seen: list[tuple[str, str]] = []

    class Snapshot(handler_cls):  # type: ignore[misc,valid-type]
        async def __call__(self, *args: Any, **kwargs: Any) -> Any:
            seen.extend(sent)
            return await super().__call__(*args, **kwargs)

    handler = Snapshot()
    await kit.consumer(handler, claim_interval_s=5.0, claim_idle_ms=60_000)
    await kit.publish({"symbol": "BTCUSDT", "side": "BUY", "position_size_usd": 100, "intent_id": "quiet"})
    await kit.wait_results(1)

    worker = [command for task, command in seen if task == "symbol-BTCUSDT"]
    assert worker == ["EVALSHA"], worker


async def test_one_redis_round_trip_after_the_handler_commits_acks_and_gives_the_lease_back(
    kit: Any, handler_cls: Any
) -> None:
    """After the executor returned, its symbol worker sends one command: the commit script, which
    publishes, acks and releases the lease (the next entry of the symbol finds it free at once)."""
    sent: list[tuple[str, str]] = []
    original = kit.redis.execute_command
    returned = asyncio.Event()

    async def counting(*args: Any, **kwargs: Any) -> Any:
        task = asyncio.current_task()
        if returned.is_set():
            sent.append((task.get_name() if task else "", str(args[0])))
        return await original(*args, **kwargs)

    kit.redis.execute_command = counting

    class Marking(handler_cls):  # type: ignore[misc,valid-type]
        async def __call__(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return await super().__call__(*args, **kwargs)
            finally:
                returned.set()

    consumer = await kit.consumer(Marking(), claim_interval_s=5.0, claim_idle_ms=60_000)
    await kit.publish({"symbol": "ETHUSDT", "side": "BUY", "position_size_usd": 100, "intent_id": "after"})
    await kit.wait_results(1)
    store = consumer.store

    async def lease_free() -> bool:
        return await kit.redis.get(store.keys.lease("ETHUSDT")) is None

    await wait_for(lease_free, 10, "the lease given back")
    worker = [command for task, command in sent if task == "symbol-ETHUSDT"]
    assert worker == ["EVALSHA"], worker


async def test_older_entries_known_to_be_of_other_symbols_do_not_hold_the_lead_in(kit: Any) -> None:
    store = Store(kit.redis, kit.settings())
    eth, btc_1, btc_2 = await _deliver(kit, store, "ETHUSDT", "BTCUSDT", "BTCUSDT")

    # The older ETH entry is known to be of another symbol: passed over, the lease is taken.
    taken = await store.acquire_and_begin("BTCUSDT", "me", "k-btc-1", btc_1, "h-1", other_symbols=[eth])
    assert taken is not None and not isinstance(taken, Older)
    # An older entry of the same symbol still answers, whatever else is named.
    found = await store.acquire_and_begin("BTCUSDT", "me", "k-btc-2", btc_2, "h-2", other_symbols=[eth])
    assert found == Older([btc_1], complete=True)
    assert await kit.redis.exists(store.keys.idempotency("k-btc-2")) == 0


async def test_a_burst_over_many_symbols_runs_each_lead_in_once(kit: Any, handler_cls: Any) -> None:
    """Every entry of a burst has older entries of other symbols pending (this consumer's own):
    the order check passes over them, so each entry's lead-in is one script, not two."""
    consumer = await kit.consumer(handler_cls(), claim_interval_s=5.0, claim_idle_ms=60_000, read_count=50)
    lead_ins: list[str] = []
    original = consumer.store.acquire_and_begin

    async def counting(*args: Any, **kwargs: Any) -> Any:
        lead_ins.append(args[3])
        return await original(*args, **kwargs)

    consumer.store.acquire_and_begin = counting  # type: ignore[method-assign]
    payloads = [
        {"symbol": f"X{n:02d}USDT", "side": "BUY", "position_size_usd": 100, "intent_id": f"burst-{n}"}
        for n in range(30)
    ]
    await asyncio.gather(*(kit.publish(payload) for payload in payloads))
    await kit.wait_results(30)
    assert len(lead_ins) == len(set(lead_ins)) == 30, sorted(lead_ins)
