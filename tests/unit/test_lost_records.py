"""When a new begin record is not trusted (a failover may have lost the real one), and what follows."""

from __future__ import annotations

from datetime import UTC, datetime

from quantum_exec.stream.entries import Entry
from quantum_exec.stream.leases import FENCE_FRESH_S
from quantum_exec.stream.recovery import attempt_of, record_lost_by
from quantum_exec.stream.store import BeginState, Begun


def _entry(deliveries: int, outage_since: float | None = None) -> Entry:
    return Entry("1-0", {}, deliveries, datetime.now(UTC), outage_since=outage_since)


def test_after_an_outage_every_new_record_is_suspect_from_the_outage_start() -> None:
    assert record_lost_by(_entry(1), 100.0, 5.0) == 100.0
    assert record_lost_by(_entry(3), 100.0, 5.0) == 100.0


def test_without_an_outage_only_redeliveries_are_suspect_from_the_connection() -> None:
    assert record_lost_by(_entry(2), None, 5.0) == 5.0
    assert record_lost_by(_entry(1), None, 5.0) is None


def test_an_entry_read_inside_the_window_stays_suspect_after_it() -> None:
    assert record_lost_by(_entry(1, outage_since=100.0), None, 5.0) == 100.0
    assert record_lost_by(_entry(2, outage_since=100.0), None, 5.0) == 100.0
    # A later outage bounds the earlier attempt's orders later still: that one is kept.
    assert record_lost_by(_entry(1, outage_since=100.0), 200.0, 5.0) == 200.0


def test_a_suspect_new_record_resumes_by_lookups_and_never_repairs() -> None:
    attempt = attempt_of(Begun(BeginState.NEW, attempts=1), 1, record_lost_by=42.0)
    # Its orders may have left up to FENCE_FRESH_S after its last fence Redis confirmed.
    assert attempt.resume and attempt.earlier_sent_by == 42.0 + FENCE_FRESH_S and not attempt.repair
    assert not attempt_of(Begun(BeginState.NEW, attempts=1), 1).resume
    # A record that exists keeps its own meaning whatever the outage.
    assert attempt_of(Begun(BeginState.RESUMED, attempts=1), 5, record_lost_by=42.0).earlier_sent_by is None


def test_an_exhausted_client_pool_is_not_an_outage_that_may_have_lost_writes() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import MaxConnectionsError

    from quantum_exec.stream.link import RedisLink

    link = RedisLink(0.2)
    link.lost(MaxConnectionsError("Too many connections"), "fence")
    assert not link.down and link.writes_maybe_lost_since() is None
    link.lost(RedisConnectionError("Connection refused"), "read")
    assert link.down and link.writes_maybe_lost_since() is not None
