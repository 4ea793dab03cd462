"""`quantum-exec serve` as an operator runs it: killed with SIGKILL and started again on the
embedded defaults (the private Redis dies with it and keeps its data, every intent published before
the kill gets exactly one result), `check` beside it, a busy metrics port, a standalone simulator."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from support.waiting import alive, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

EXE = str(Path(sys.executable).parent / "quantum-exec")
RESULTS = "quantum:stream:execution.result"
INTENTS = "quantum:stream:trade.intent"


class Serve:
    def __init__(self, tmp_path: Path) -> None:
        self.runtime = tmp_path / "run"
        self.state = tmp_path / "state"
        self.log = (tmp_path / "serve.log").open("ab")
        base = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))}
        self.env = {
            **base,
            "XDG_RUNTIME_DIR": str(self.runtime),
            "QUANTUM_STATE_DIR": str(self.state),
            "QUANTUM_METRICS_PORT": "0",
            "QUANTUM_WATCHDOG": "false",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def endpoints(self) -> dict[str, object]:
        path = self.runtime / "quantum-exec" / "endpoints.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return data if self.proc is not None and data.get("pid") == self.proc.pid else {}

    def start(self, **env: str) -> redis.Redis:
        self.proc = subprocess.Popen(
            [EXE, "serve"], env={**self.env, **env}, stdout=self.log, stderr=self.log
        )
        wait_until(self.endpoints, 60, "serve to record its endpoints")
        return redis.Redis.from_url(str(self.endpoints()["redis_url"]), protocol=2)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _intent(n: int) -> dict[str, str]:
    payload = {
        "intent_id": f"restart-{n}",
        "symbol": ("BTCUSDT", "ETHUSDT", "SOLUSDT")[n % 3],
        "side": "BUY",
        "position_size_usd": 200,
        "leverage": 2,
        "stop_loss_pct": 2,
        "take_profit_pct": 4,
        "timestamp": time.time(),
    }
    return {"event_type": "trade.intent", "payload": json.dumps(payload), "source": "test"}


def _result_ids(client: redis.Redis) -> list[str]:
    ids = []
    for _, fields in client.xrange(RESULTS):
        ids.append(json.loads(fields[b"payload"])["intent_id"])
    return ids


def test_sigkilled_serve_restarted_answers_every_intent(tmp_path: Path) -> None:
    serve = Serve(tmp_path)
    try:
        client = serve.start()
        redis_pid = int((serve.state / "redis" / "redis.pid").read_text())
        for n in range(12):
            client.xadd(INTENTS, _intent(n))
        serve.kill()  # at once: most intents are unread or in flight
        client.close()
        wait_until(lambda: not alive(redis_pid), 10, "the private redis-server to die with serve")

        client = serve.start()
        wait_until(lambda: len(_result_ids(client)) >= 12, 60, "a result for every intent")
        ids = _result_ids(client)
        assert sorted(ids) == sorted(f"restart-{n}" for n in range(12))  # each exactly once
        assert client.xlen(INTENTS) == 12  # the intents published before the kill were kept
        client.close()
    finally:
        serve.stop()


def test_check_finds_the_port_an_embedded_serve_recorded(tmp_path: Path) -> None:
    serve = Serve(tmp_path)
    try:
        serve.start().close()
        env = {k: v for k, v in serve.env.items() if k != "QUANTUM_METRICS_PORT"}
        probe = subprocess.run([EXE, "check"], env=env, capture_output=True, text=True, timeout=30)
        assert probe.returncode == 0, probe.stderr
        [line] = probe.stdout.splitlines()  # one line on success, naming what was checked
        assert line.startswith("ready: http://127.0.0.1:") and "redis ok" in line and not probe.stderr
    finally:
        serve.stop()


def test_a_busy_metrics_port_is_one_line_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        serve = Serve(tmp_path)
        env = {**serve.env, "QUANTUM_METRICS_PORT": str(port)}
        out = subprocess.run([EXE, "serve"], env=env, capture_output=True, text=True, timeout=60)
        serve.log.close()
    assert out.returncode == 2
    # One line and nothing else: refused before the embedded Redis, the simulator or the account
    # lease were started (their start and stop would be logged; Redis would create its directory).
    [line] = out.stderr.splitlines()
    assert line.startswith("quantum-exec:"), out.stderr
    assert (f"QUANTUM_METRICS_PORT={port}" in line and "in use" in line) or "already" in line
    assert not (serve.state / "redis").exists()


def test_serve_against_a_standalone_sim_needs_no_keys(tmp_path: Path) -> None:
    sim = subprocess.Popen([EXE, "sim", "--port", "0"], stdout=subprocess.PIPE, text=True)
    serve = Serve(tmp_path)
    try:
        assert sim.stdout is not None
        base_url = sim.stdout.readline().split()[3]
        client = serve.start(QUANTUM_EXCHANGE="sim", QUANTUM_BINANCE_BASE_URL=base_url)
        client.xadd(INTENTS, _intent(0))
        wait_until(lambda: _result_ids(client), 30, "the result")
        [(_sid, fields)] = client.xrange(RESULTS)
        assert json.loads(fields[b"payload"])["status"] == "filled"
        client.close()
    finally:
        serve.stop()
        sim.kill()
        sim.wait()
