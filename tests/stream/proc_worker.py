"""A service process for the kill and SIGTERM tests: ``python proc_worker.py '<json config>'``.

Runs :class:`Service` with a handler that appends ``started``/``finished`` lines (stream id,
resume flag) to ``events_path`` and sleeps ``delay_s`` per intent.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from quantum_exec.app.service import Service
from quantum_exec.contracts import ExecutionResult, ResultStatus, TradeIntent, intent_key
from quantum_exec.core.settings import Settings
from quantum_exec.execution.run import Attempt


def main() -> int:
    config: dict[str, Any] = orjson.loads(sys.argv[1])
    events = Path(config.pop("events_path"))
    delay_s = float(config.pop("delay_s"))
    settings = Settings(**config)

    def record(line: str) -> None:
        with events.open("a") as out:
            out.write(line + "\n")

    async def handler(
        intent: TradeIntent, stream_id: str, received_at: datetime, *, attempt: Attempt
    ) -> ExecutionResult:
        record(f"started {stream_id} {int(attempt.resume)}")
        await asyncio.sleep(delay_s)
        record(f"finished {stream_id}")
        return ExecutionResult(
            symbol=intent.symbol,
            action=intent.side,
            status=ResultStatus.FILLED,
            intent_id=intent_key(intent, stream_id),
            stream_id=stream_id,
        )

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    service = Service(settings, handler=handler, operations=False, on_ready=lambda: record("ready"))
    return asyncio.run(service.run_until_signal())


if __name__ == "__main__":
    sys.exit(main())
