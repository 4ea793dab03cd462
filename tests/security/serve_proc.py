"""`quantum-exec serve` as a separate process, as an operator (or an attacker beside it) sees it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from support.waiting import wait_until

EXE = str(Path(sys.executable).parent / "quantum-exec")
RESULTS = "quantum:stream:execution.result"
INTENTS = "quantum:stream:trade.intent"
DEAD_LETTERS = "quantum:stream:trade.intent.dlq"


def clean_env(tmp_path: Path, **env: str) -> dict[str, str]:
    """The caller's environment without any QUANTUM_/BINANCE_ setting, private dirs under tmp_path."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))}
    base.pop("CREDENTIALS_DIRECTORY", None)
    return {
        **base,
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "QUANTUM_STATE_DIR": str(tmp_path / "state"),
        "QUANTUM_METRICS_PORT": "0",
        "QUANTUM_WATCHDOG": "false",
        **env,
    }


def run_cli(env: dict[str, str], *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``quantum-exec ARGS`` to completion (for start-up refusals and ``--print-config``)."""
    return subprocess.run([EXE, *args], env=env, capture_output=True, text=True, timeout=timeout_s)


class Serve:
    """A running ``serve`` on the embedded defaults; its output goes to ``log_path``."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.env = clean_env(tmp_path, **env)
        self.runtime = Path(self.env["XDG_RUNTIME_DIR"])
        self.log_path = tmp_path / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def endpoints(self) -> dict[str, Any]:
        try:
            data = json.loads((self.runtime / "quantum-exec" / "endpoints.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if self.proc is not None and data.get("pid") == self.proc.pid else {}

    def start(self, umask: int = 0o022, args: tuple[str, ...] = ()) -> dict[str, Any]:
        """Start it (under a usual umask, so what it creates private it made private itself)."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [EXE, "serve", *args], env=self.env, stdout=log, stderr=log, umask=umask
            )
        wait_until(self.endpoints, 60, "serve to record its endpoints")
        return self.endpoints()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
