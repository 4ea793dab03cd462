"""One INFO line per intent's outcome, with what operators read from it."""

from __future__ import annotations

import logging
from typing import Any

import pytest


async def test_one_info_line_tells_the_outcome_of_an_intent(
    kit: Any, handler_cls: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """intent.result_published carries what the executor's line said (action, protection,
    latency): the executor's own intent.executed is at DEBUG, one INFO line per intent remains."""
    caplog.set_level(logging.INFO, logger="quantum_exec")
    await kit.consumer(handler_cls())
    await kit.publish({"symbol": "BTCUSDT", "side": "BUY", "position_size_usd": 100, "intent_id": "one-line"})
    await kit.wait_results(1)
    await kit.wait_until(
        lambda: any(r.getMessage() == "intent.result_published" for r in caplog.records), 5, "the line"
    )
    [line] = [r for r in caplog.records if r.getMessage() == "intent.result_published"]
    fields = line.__dict__["kv"]
    assert fields["intent_id"] == "one-line" and fields["action"] == "BUY" and fields["status"] == "filled"
    assert {"protection", "latency_ms", "reason", "result_id"} <= set(fields)
