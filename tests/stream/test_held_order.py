"""HeldOrder: the lead-in's older-of-other-symbols set, kept sorted, is what a scan of every held
entry finds (its oldest ``limit``), through arrivals out of order, claims and forgets."""

from __future__ import annotations

import random

from quantum_exec.stream.entries import id_order
from quantum_exec.stream.ordering import HeldOrder


def scan(held: dict[str, str], stream_id: str, symbol: str, limit: int) -> list[str]:
    before = id_order(stream_id)
    older = [sid for sid, sym in held.items() if sym != symbol and id_order(sid) < before]
    return sorted(older, key=id_order)[:limit]


def test_older_of_other_symbols_matches_a_scan_of_every_held_entry() -> None:
    rng = random.Random(29)
    index, held = HeldOrder(), {}
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
    for step in range(3000):
        if held and rng.random() < 0.45:
            sid = rng.choice(sorted(held))
            index.discard(sid)
            del held[sid]
        else:
            # Mostly increasing ids, sometimes an older one (a claimed entry), same-ms sequences.
            ms = 1_700_000_000_000 + step // 3 - (rng.randint(0, 500) if rng.random() < 0.1 else 0)
            sid = f"{ms}-{rng.randint(0, 3)}"
            symbol = rng.choice(symbols)
            if sid not in held:
                held[sid] = symbol
            index.add(sid, held[sid])  # adding a held id again changes nothing
        assert len(index) == len(held)
        if held:
            sid = rng.choice(sorted(held))
            limit = rng.choice([1, 5, 200])
            got = index.older_of_other_symbols(sid, held[sid], limit)
            assert got == scan(held, sid, held[sid], limit)


def test_an_unheld_id_and_a_missing_discard_are_harmless() -> None:
    index = HeldOrder()
    index.add("5-0", "A")
    index.add("7-0", "B")
    index.discard("6-0")
    assert index.older_of_other_symbols("9-0", "A", 10) == ["7-0"]
    assert index.older_of_other_symbols("9-0", "C", 10) == ["5-0", "7-0"]
    assert index.older_of_other_symbols("5-0", "B", 10) == []
