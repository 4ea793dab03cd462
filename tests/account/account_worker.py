"""A whole service as a process, for the account-lease takeover test: ``python account_worker.py '<json>'``.

Runs :class:`Service` with the real executor and account follower against the simulator named in
the settings; writes ``ready`` to ``events_path`` once consuming.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import orjson

from quantum_exec.app.service import Service
from quantum_exec.core.settings import Settings
from quantum_exec.ops.logs import TextFormatter


def main() -> int:
    config: dict[str, Any] = orjson.loads(sys.argv[1])
    events = Path(config.pop("events_path"))
    settings = Settings(**config)

    def ready() -> None:
        with events.open("a") as out:
            out.write(f"ready {settings.consumer_name}\n")

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter())  # the fields too: the log is what a failed test leaves
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    service = Service(settings, operations=False, on_ready=ready)
    return asyncio.run(service.run_until_signal())


if __name__ == "__main__":
    sys.exit(main())
