"""The orders known filled by REST that the live view has not seen (pure)."""

from __future__ import annotations

from quantum_exec.account.unseen import MAX_UNSEEN_PER_SYMBOL, UnseenFills


def test_an_order_is_pending_until_seen_or_older_than_the_snapshot() -> None:
    unseen = UnseenFills()
    unseen.add("ETHUSDT", [1, 2], update_time_ms=1_000)
    assert unseen.pending("ETHUSDT", lambda order_id: False, snapshot_ms=0)
    assert not unseen.pending("BTCUSDT", lambda order_id: False, snapshot_ms=0)
    assert unseen.pending("ETHUSDT", lambda order_id: order_id == 1, snapshot_ms=0)  # 2 still unseen
    assert not unseen.pending("ETHUSDT", lambda order_id: order_id == 2, snapshot_ms=0)  # both gone now
    unseen.add("ETHUSDT", [3], update_time_ms=5_000)
    assert unseen.pending("ETHUSDT", lambda order_id: False, snapshot_ms=4_999)
    assert not unseen.pending("ETHUSDT", lambda order_id: False, snapshot_ms=5_000)  # a resync holds it


def test_the_oldest_are_forgotten_past_the_bound() -> None:
    unseen = UnseenFills()
    unseen.add("ETHUSDT", range(MAX_UNSEEN_PER_SYMBOL + 10), update_time_ms=1)
    kept: list[int] = []
    unseen.pending("ETHUSDT", lambda order_id: kept.append(order_id) is not None, snapshot_ms=0)
    assert len(kept) == MAX_UNSEEN_PER_SYMBOL and min(kept) == 10
