"""When a new begin record is not trusted (a failover may have lost the real one), and what follows."""

from __future__ import annotations

from quantum_exec.stream.recovery import attempt_of, record_lost_by
from quantum_exec.stream.store import BeginState, Begun


def test_after_an_outage_every_new_record_is_suspect_from_the_outage_start() -> None:
    assert record_lost_by(100.0, 1, 5.0) == 100.0
    assert record_lost_by(100.0, 3, 5.0) == 100.0


def test_without_an_outage_only_redeliveries_are_suspect_from_the_connection() -> None:
    assert record_lost_by(None, 2, 5.0) == 5.0
    assert record_lost_by(None, 1, 5.0) is None


def test_a_suspect_new_record_resumes_by_lookups_and_never_repairs() -> None:
    attempt = attempt_of(Begun(BeginState.NEW, attempts=1), 1, record_lost_by=42.0)
    assert attempt.resume and attempt.earlier_sent_by == 42.0 and not attempt.repair
    assert not attempt_of(Begun(BeginState.NEW, attempts=1), 1).resume
    # A record that exists keeps its own meaning whatever the outage.
    assert attempt_of(Begun(BeginState.RESUMED, attempts=1), 5, record_lost_by=42.0).earlier_sent_by != 42.0


def test_an_exhausted_client_pool_is_not_an_outage_that_may_have_lost_writes() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import MaxConnectionsError

    from quantum_exec.stream.link import RedisLink

    link = RedisLink(0.2)
    link.lost(MaxConnectionsError("Too many connections"), "fence")
    assert not link.down and link.writes_maybe_lost_since() is None
    link.lost(RedisConnectionError("Connection refused"), "read")
    assert link.down and link.writes_maybe_lost_since() is not None
