"""The log line's timestamp, formatted once per second, is the text datetime gives for every moment."""

from __future__ import annotations

import logging
import random
import time
from datetime import UTC, datetime

from quantum_exec.ops.logs import _timestamp


def _reference(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_timestamps_match_datetime_to_the_millisecond() -> None:
    rng = random.Random(29)
    now = time.time()
    moments = [rng.uniform(0, 4e9) for _ in range(20_000)] + [now + i * 1e-4 for i in range(20_000)]
    # Rounding at the edges: half a microsecond below a second, a carry into the next one.
    moments += [1.9999994, 1.9999996, 0.0, 1_765_000_000.9999995, 1_026_523_129.7149997]
    record = logging.LogRecord("quantum_exec", logging.INFO, "", 0, "event", None, None)
    for moment in moments:
        record.created = moment
        assert _timestamp(record) == _reference(moment), moment
