"""Adversarial review of df72d36: the 'opened' merge's compare-and-set retry, and a record the
version before (862be4a) wrote.

1. The merge reads the intent's opened record, then the symbol goes flat (closed on the exchange)
   and the live OCO (or the reconcile's RecordFlat) drops its records before the merge's
   compare-and-set lands. The CAS is refused (0) and the loop retries with ``expected = ""`` but
   with the *merged* record: the record is gone, so the script writes it whole on a flat symbol.
   At 862be4a the single script wrote nothing over an opened record, and the drop held. (A drop
   *before* the write is the known limit's shape; this window is the merge's own.)
2. A record written by 862be4a carries ``shrunk_by`` but no ``opened_quantity``: a level shrank
   it (shrunk_by non-empty). During a rolling upgrade the redelivered intent's attempt on
   df72d36 finds it smaller than its fill and writes it whole again, putting the level back
   (what 862be4a was made to stop; the docstring says "as that version did", but 862be4a kept it).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from redis import asyncio as aioredis

from quantum_exec.account.records import IntentIds, IntentRecords, _digest
from quantum_exec.account.store import AccountStore
from quantum_exec.core.settings import Settings
from support.sim_state import intent as make_intent

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

D = Decimal


def _entry(intent_id: str) -> Any:
    return make_intent(
        intent_id=intent_id,
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.010",
        stop_loss="90000",
        take_profit="99000",
    )


async def _claims(store: AccountStore) -> dict[str, Decimal]:
    return {r.intent_key: r.quantity for r in await store.records_of("BTCUSDT") if r.opened}


def _between_read_and_cas(store: AccountStore, monkeypatch: pytest.MonkeyPatch, meanwhile: Any) -> list[Any]:
    """Run ``meanwhile`` right before the merge's compare-and-set (the put script's 2nd call)."""
    script = store.batch.script
    calls: list[Any] = []

    async def hooked(*args: Any) -> Any:
        if args[0] is store._put_opened:
            calls.append(args[2][3] if len(args[2]) > 3 else None)
            if len(calls) == 2:
                await meanwhile()
        return await script(*args)

    monkeypatch.setattr(store.batch, "script", hooked)
    return calls


async def test_a_flat_symbols_drop_mid_merge_is_not_undone(
    redis: aioredis.Redis, unique_names: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = AccountStore(redis, Settings(**unique_names), owner="h")
    records = IntentRecords(store, IntentIds(store))
    intent = _entry("mr-1")
    await records.opening("mr-1", intent)
    await records.opened("mr-1", intent, D("0.006"), D("90000"), D("99000"))
    # The live OCO's drop_records on a flat symbol (REST agrees): one HDEL of the opened records.
    calls = _between_read_and_cas(
        store, monkeypatch, lambda: store.drop_records("BTCUSDT", [_digest("mr-1")])
    )
    # The redelivered attempt found more filled (a resumed child): it merges over the record...
    await records.opened("mr-1", intent, D("0.010"), D("90000"), D("99000"))
    assert len(calls) >= 2, calls
    # ...while the symbol went flat and its records were dropped: the position is gone.
    assert await _claims(store) == {}, (
        f"the record dropped (flat symbol) between the merge's read and its compare-and-set was written "
        f"back by the retry (expected '' with the merged record): {await _claims(store)}"
    )


async def test_a_record_862be4a_shrank_is_not_written_whole_in_a_rolling_upgrade(
    redis: aioredis.Redis, unique_names: dict[str, Any]
) -> None:
    store = AccountStore(redis, Settings(**unique_names), owner="h")
    records = IntentRecords(store, IntentIds(store))
    intent = _entry("mr-3")
    digest = _digest("mr-3")
    # As 862be4a wrote it (shrunk_by kept, no opened_quantity), after a level took 0.004 off.
    await redis.hset(
        f"{store.records_key}:BTCUSDT",
        digest,
        b'{"intent_key":"mr-3","intent_id":"mr-3","symbol":"BTCUSDT","long":true,"quantity":"0.006",'
        b'"stop_loss":"90000","take_profit":"99000","opened":true,"shrunk_by":["BTCUSDT:9:1"]}',
    )
    await redis.sadd(f"{store.records_key}:symbols", "BTCUSDT")
    # The redelivered intent's attempt, on df72d36, with the entry's fill (the same fill).
    await records.opened("mr-3", intent, D("0.010"), D("90000"), D("99000"))
    assert await _claims(store) == {"mr-3": D("0.006")}, (
        f"the level 862be4a's record was shrunk by (shrunk_by=['BTCUSDT:9:1']) is put back by the "
        f"redelivered write of the same fill: {await _claims(store)}"
    )
