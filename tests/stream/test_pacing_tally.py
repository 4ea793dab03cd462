"""The live instance count and the others' usage from the shared pacing's heartbeat reply (pure)."""

from __future__ import annotations

from quantum_exec.exchange.pacing import Usage
from quantum_exec.stream.shared_pacing import tally


def test_the_others_usage_is_summed_and_ours_left_out() -> None:
    usage = {"a": "100,10,40", "b": "50,5,20", "c": "1,1,1"}
    assert tally(usage, "a", "") == (3, Usage(51, 6, 21))


def test_a_restarted_instance_counts_its_predecessors_report_as_the_others() -> None:
    # Its requests are still in the windows and in none of our logs.
    assert tally({"a": "0,0,0"}, "a", "80,9,30") == (1, Usage(80, 9, 30))


def test_an_unreadable_report_counts_as_nothing_sent_but_the_instance_counts() -> None:
    assert tally({"a": "0,0,0", "b": "junk"}, "a", "") == (2, Usage())
