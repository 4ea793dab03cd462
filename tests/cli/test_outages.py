"""Outages seen from outside, as an operator meets them: a real `serve` against a standalone
simulator that is then killed, and a `serve` whose Redis is not there yet."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

EXE = str(Path(sys.executable).parent / "quantum-exec")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except (urllib.error.URLError, ConnectionError):
        return 0, None


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))}
    return {
        **base,
        "XDG_RUNTIME_DIR": str(tmp_path / "run"),
        "QUANTUM_STATE_DIR": str(tmp_path / "state"),
        "QUANTUM_WATCHDOG": "false",
        **extra,
    }


def test_an_unreachable_exchange_is_a_503_naming_it_and_one_line_for_positions(tmp_path: Path) -> None:
    sim = subprocess.Popen([EXE, "sim", "--port", "0"], stdout=subprocess.PIPE, text=True)
    port = free_port()
    assert sim.stdout is not None
    base_url = sim.stdout.readline().split()[3]
    env = clean_env(tmp_path, QUANTUM_BINANCE_BASE_URL=base_url, QUANTUM_METRICS_PORT=str(port))
    with (tmp_path / "serve.log").open("wb") as log:
        serve = subprocess.Popen([EXE, "serve"], env=env, stdout=log, stderr=log)
        try:
            wait_until(lambda: get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 60, "serve ready")
            assert get(f"http://127.0.0.1:{port}/api/positions")[0] == 200
            started = [
                json.loads(x) for x in (tmp_path / "serve.log").read_text().splitlines() if x.startswith("{")
            ]
            assert {"event": "console.listening", "url": f"http://127.0.0.1:{port}/"}.items() <= next(
                r for r in started if r["event"] == "console.listening"
            ).items()  # the console's address, said at start
            sim.kill()
            sim.wait()
            for path in ("/api/positions", "/api/orders"):
                status, body = get(f"http://127.0.0.1:{port}{path}")
                assert status == 503, (path, body)
                assert base_url in body["error"]["message"] and body["error"]["unavailable"] == "exchange"
            # What still answers keeps answering: the status says which check fails and why.
            wait_until(
                lambda: get(f"http://127.0.0.1:{port}/readyz")[1]["failing"] == ["exchange"], 30, "not ready"
            )
            readyz = get(f"http://127.0.0.1:{port}/readyz")[1]
            assert base_url in readyz["checks"]["exchange"]["error"]
            probe = subprocess.run([EXE, "check"], env=env, capture_output=True, text=True, timeout=30)
            assert probe.returncode == 1
            assert probe.stderr.splitlines() == [
                f"not ready: exchange: the exchange at {base_url} is unreachable"
            ]
            assert get(f"http://127.0.0.1:{port}/api/status")[0] == 200
            assert get(f"http://127.0.0.1:{port}/api/results")[0] == 200
            out = subprocess.run(
                [EXE, "positions"],
                env={**env, "QUANTUM_METRICS_PORT": str(port)},
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert out.returncode == 2 and "Traceback" not in out.stderr
            [line] = out.stderr.splitlines()
            assert "503" in line and base_url in line and "unreachable" in line
        finally:
            serve.terminate()
            serve.wait(timeout=60)
            sim.kill()


def test_health_answers_while_redis_is_not_there_yet(tmp_path: Path) -> None:
    port = free_port()
    redis_url = f"redis://:pw-0123456789@127.0.0.1:{free_port()}/0"
    env = clean_env(tmp_path, QUANTUM_REDIS_URL=redis_url, QUANTUM_METRICS_PORT=str(port))
    with (tmp_path / "serve.log").open("wb") as log:
        serve = subprocess.Popen([EXE, "serve"], env=env, stdout=log, stderr=log)
        try:
            wait_until(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 60, "/healthz")
            status, body = get(f"http://127.0.0.1:{port}/readyz")
            assert status == 503 and "redis" in body["failing"]
            reason = body["checks"]["redis"]["error"]
            assert "waiting for Redis at redis://:****@127.0.0.1" in reason and "pw-0123456789" not in reason
            status, body = get(f"http://127.0.0.1:{port}/api/positions")
            assert status == 503 and "waiting for Redis" in body["error"]["message"]
        finally:
            serve.terminate()
            assert serve.wait(timeout=60) == 0
