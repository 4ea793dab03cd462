"""A Redis outage seen by a loop that retries every 200 ms is three kinds of line, not five a second:
one when it starts, one a minute while it lasts, one when it ends (a clock stands in for time)."""

from __future__ import annotations

import logging

import pytest

from quantum_exec.ops.logs import get_logger
from quantum_exec.ops.outage import OutageLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_line_at_the_start_one_a_minute_one_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outage = OutageLog(get_logger("test.outage"), "ledger.redis_down", clock=clock)
    caplog.set_level(logging.INFO, logger="test.outage")
    outage.ok()  # no outage: nothing to say
    for _ in range(5 * 150):  # 150 s of failures every 200 ms
        outage.failed(error="Connection refused")
        clock.now += 0.2
    outage.ok()
    outage.ok()
    records = [(r.levelname, r.getMessage(), r.__dict__["kv"]) for r in caplog.records]
    assert [(level, event) for level, event, _ in records] == [
        ("WARNING", "ledger.redis_down"),
        ("WARNING", "ledger.redis_down"),
        ("WARNING", "ledger.redis_down"),
        ("INFO", "ledger.redis_down_ended"),
    ]
    assert records[0][2] == {"error": "Connection refused"}
    assert records[1][2]["ongoing_s"] == 60.0 and records[2][2]["ongoing_s"] == 120.0
    assert records[3][2] == {"lasted_s": 150.0, "failures": 750}
    # A second outage starts over: its first failure is said at once.
    caplog.clear()
    outage.failed(error="again")
    assert [r.getMessage() for r in caplog.records] == ["ledger.redis_down"]
