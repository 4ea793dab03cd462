"""Ctrl-C (SIGINT) and SIGTERM on a real `serve`: it says what it waits for, does not wait for a
LIMIT resting on the exchange (that cannot finish by waiting), and a second signal stops at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

EXE = str(Path(sys.executable).parent / "quantum-exec")
GRACE_S = "600"  # far longer than any wait below: a stop that ends sooner did not wait it out


class Serve:
    def __init__(self, tmp_path: Path, **extra: str) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))}
        self.env = {
            **base,
            "XDG_RUNTIME_DIR": str(tmp_path / "run"),
            "QUANTUM_STATE_DIR": str(tmp_path / "state"),
            "QUANTUM_METRICS_PORT": "0",
            "QUANTUM_WATCHDOG": "false",
            "QUANTUM_SHUTDOWN_GRACE_S": GRACE_S,
            **extra,
        }
        self.log_path = tmp_path / "serve.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen([EXE, "serve"], env=self.env, stdout=self.log, stderr=self.log)
        endpoints = tmp_path / "run" / "quantum-exec" / "endpoints.json"
        wait_until(endpoints.exists, 90, "serve to be ready")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([EXE, *args], env=self.env, capture_output=True, text=True, timeout=60)

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(x) for x in self.log_path.read_text().splitlines() if x.startswith("{")]

    def event(self, name: str) -> dict[str, Any]:
        return next(r for r in self.records() if r["event"] == name)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def working(serve: Serve, intent_id: str) -> bool:
    out = serve.cli("results", "--intent", intent_id, "--json")
    return out.returncode == 0 and json.loads(out.stdout.splitlines()[0]).get("state") == "working"


def test_a_resting_limit_is_not_waited_for_and_the_wait_is_said(tmp_path: Path) -> None:
    serve = Serve(tmp_path)
    try:
        args = ["--symbol", "BTCUSDT", "--side", "BUY", "--size-usd", "500", "--type", "LIMIT"]
        out = serve.cli("submit", "--intent-id", "rest-sig", *args, "--limit-offset-pct", "2")
        assert out.returncode == 0, out.stderr
        wait_until(lambda: working(serve, "rest-sig"), 30, "the LIMIT to rest")
        wait_until(lambda: any(r["event"] == "intent.working" for r in serve.records()), 30, "it parked")
        serve.proc.send_signal(signal.SIGINT)
        assert serve.proc.wait(timeout=120) in (0, 1)  # far sooner than the 600 s grace
        draining = serve.event("consumer.draining")
        assert draining["resting"] == ["rest-sig"] and draining["executing"] == []
        assert "second SIGTERM/SIGINT stops at once" in draining["detail"]
    finally:
        serve.close()


def test_a_second_signal_stops_at_once(tmp_path: Path) -> None:
    serve = Serve(tmp_path, QUANTUM_SIM_LATENCY_MS="3000")  # every exchange answer takes 3 s
    try:
        out = serve.cli(
            "submit",
            "--no-check",
            "--intent-id",
            "slow-1",
            "--symbol",
            "BTCUSDT",
            "--side",
            "BUY",
            "--size-usd",
            "500",
            "--sl-pct",
            "1",
            "--tp-pct",
            "2",
        )
        assert out.returncode == 0, out.stderr
        wait_until(lambda: working(serve, "slow-1"), 60, "the intent to be executing")
        serve.proc.send_signal(signal.SIGINT)
        wait_until(lambda: any(r["event"] == "consumer.draining" for r in serve.records()), 30, "the drain")
        assert serve.event("consumer.draining")["executing"] == ["slow-1"]
        serve.proc.send_signal(signal.SIGINT)
        assert serve.proc.wait(timeout=120) == 1  # work was cancelled: resumed after a restart
        assert any(r["event"] == "service.stopping_now" for r in serve.records())
    finally:
        serve.close()
