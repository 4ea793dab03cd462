"""The whole service as a process (``tests/account/account_worker.py``), to be SIGKILLed and started
again: an unclean restart, as a crash or a power cut leaves it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

from support.desk import SIM_KEY, SIM_SECRET, Desk

WORKER = Path(__file__).parent.parent / "account" / "account_worker.py"


class KillableService:
    """One consumer name across spawns, so each start re-reads what the killed one held."""

    def __init__(
        self, desk: Desk, tmp_path: Path, consumer_name: str = "twap-worker", **overrides: Any
    ) -> None:
        self._tmp = tmp_path
        self._config = {
            **desk.names,
            "redis_url": desk.redis_url,
            "consumer_name": consumer_name,
            "binance_base_url": desk.sim.base_url,
            "api_key": SIM_KEY,
            "api_secret": SIM_SECRET,
            "block_ms": 100,
            "claim_interval_s": 0.2,
            "order_lookup_interval_s": 0.05,
            "recv_window_ms": 2000,
            "account_lease_ttl_s": 1.0,
            "lease_ttl_ms": 2000,
            "watchdog": False,
            "events_path": str(tmp_path / "events.txt"),
            **overrides,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        log = (self._tmp / "worker.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), orjson.dumps(self._config).decode()], stderr=log
        )

    def started(self) -> int:
        """How many spawns reached ``ready`` (consuming)."""
        path = self._tmp / "events.txt"
        return len(path.read_text().split("\n")) - 1 if path.exists() else 0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
