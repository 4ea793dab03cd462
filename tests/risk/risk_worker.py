"""A whole service as a process with its HTTP port, for the two-instance flatten test:
``python risk_worker.py '<json>'``; writes ``ready <name> <port>`` to ``events_path`` once consuming."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import orjson

from quantum_exec.app.service import Service
from quantum_exec.core.settings import Settings


def main() -> int:
    config: dict[str, Any] = orjson.loads(sys.argv[1])
    events = Path(config.pop("events_path"))
    settings = Settings(**config)
    service: Service

    def ready() -> None:
        with events.open("a") as out:
            out.write(f"ready {settings.consumer_name} {service.metrics_port}\n")

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    service = Service(settings, on_ready=ready)
    return asyncio.run(service.run_until_signal())


if __name__ == "__main__":
    sys.exit(main())
