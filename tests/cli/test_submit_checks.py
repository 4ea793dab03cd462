"""`submit` refuses, before publishing and with the service's reason code, what the service would
refuse; `results --intent` finds one intent's result, its dead letter, or that it still works.
A real `serve` on the embedded defaults (its simulator is the exchange the checks ask)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

EXE = str(Path(sys.executable).parent / "quantum-exec")
INTENTS = "quantum:stream:trade.intent"
DLQ = "quantum:stream:trade.intent.dlq"


class Served:
    def __init__(self, tmp_path: Path) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))}
        self.env = {
            **base,
            "XDG_RUNTIME_DIR": str(tmp_path / "run"),
            "QUANTUM_STATE_DIR": str(tmp_path / "state"),
            "QUANTUM_METRICS_PORT": "0",
            "QUANTUM_WATCHDOG": "false",
        }
        self.endpoints_file = tmp_path / "run" / "quantum-exec" / "endpoints.json"
        self.log = (tmp_path / "serve.log").open("wb")
        self.proc = subprocess.Popen([EXE, "serve"], env=self.env, stdout=self.log, stderr=self.log)
        wait_until(self.endpoints_file.exists, 60, "serve to be ready")
        url = json.loads(self.endpoints_file.read_text())["redis_url"]
        self.redis = redis.Redis.from_url(url, protocol=2)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([EXE, *args], env=self.env, capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        self.redis.close()
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    try:
        yield s
    finally:
        s.stop()


def refused(out: subprocess.CompletedProcess[str], code: str) -> str:
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    [line] = out.stderr.splitlines()
    assert line.startswith(f"quantum-exec: not submitted: {code}: "), line
    return line


def test_submit_refuses_with_the_services_reason_codes(served: Served, tmp_path: Path) -> None:
    stale = tmp_path / "stale.json"
    stale.write_text(
        json.dumps({"symbol": "BTCUSDT", "side": "BUY", "quantity": 0.01, "timestamp": 1700000000000})
    )
    assert "QUANTUM_INTENT_TTL_S=120" in refused(served.cli("submit", "--file", str(stale)), "STALE_INTENT")
    refused(
        served.cli("submit", "--symbol", "NOPEUSDT", "--side", "BUY", "--size-usd", "100"), "UNKNOWN_SYMBOL"
    )
    small = served.cli("submit", "--symbol", "BTCUSDT", "--side", "BUY", "--size-usd", "1")
    assert "not submitted: " in small.stderr and small.returncode == 2
    wrong_side = served.cli(
        "submit", "--symbol", "BTCUSDT", "--side", "BUY", "--size-usd", "500", "--sl", "999999"
    )
    assert wrong_side.returncode == 2 and "not submitted: " in wrong_side.stderr
    assert served.redis.xlen(INTENTS) == 0  # nothing of it was published
    # The service itself says the same for what the CLI refused (published without the checks).
    codes = {}
    for name, args in (
        ("small", ["--size-usd", "1"]),
        ("wrong-side", ["--size-usd", "500", "--sl", "999999"]),
    ):
        out = served.cli(
            "submit", "--no-check", "--intent-id", name, "--symbol", "BTCUSDT", "--side", "BUY", *args
        )
        assert out.returncode == 0, out.stderr
        codes[name] = out
    for name, cli_out in (("small", small), ("wrong-side", wrong_side)):
        wait_until(
            lambda n=name: served.cli("results", "--intent", n).returncode == 0, 30, f"{name}'s result"
        )
        [result] = [
            json.loads(x) for x in served.cli("results", "--intent", name, "--json").stdout.splitlines()
        ]
        assert result["status"] == "rejected"
        assert f"not submitted: {result['error']['code']}: " in cli_out.stderr

    # A MODIFY has nothing to size: the check passes it on (it was a traceback from the sizing) and
    # the service answers what only it can know, at the moment it acts.
    modify = served.cli(
        "submit", "--intent-id", "mod", "--symbol", "BTCUSDT", "--side", "MODIFY", "--sl", "90000"
    )
    assert modify.returncode == 0 and "Traceback" not in modify.stderr, modify.stderr
    wait_until(lambda: served.cli("results", "--intent", "mod").returncode == 0, 30, "the MODIFY's result")
    [answer] = [json.loads(x) for x in served.cli("results", "--intent", "mod", "--json").stdout.splitlines()]
    assert answer["error"]["code"] == "NO_POSITION", answer


def test_a_reused_intent_id_is_refused_and_its_dead_letter_is_found(served: Served) -> None:
    first = served.cli(
        "submit", "--intent-id", "reuse-1", "--symbol", "BTCUSDT", "--side", "BUY", "--size-usd", "500"
    )
    assert first.returncode == 0, first.stderr
    wait_until(lambda: served.cli("results", "--intent", "reuse-1").returncode == 0, 30, "the first result")
    other = ["--intent-id", "reuse-1", "--symbol", "ETHUSDT", "--side", "SELL", "--size-usd", "500"]
    line = refused(served.cli("submit", *other), "INTENT_ID_CONFLICT")
    assert "quantum-exec results --intent reuse-1" in line
    # The same intent again is a retry, not a conflict: published (the service answers it once).
    again = served.cli(
        "submit", "--intent-id", "reuse-1", "--symbol", "BTCUSDT", "--side", "BUY", "--size-usd", "500"
    )
    assert again.returncode == 0, again.stderr
    # Published anyway, the service dead-letters it; `results --intent` shows both.
    assert served.cli("submit", "--no-check", *other).returncode == 0
    wait_until(lambda: served.redis.xlen(DLQ) >= 1, 30, "the dead letter")
    shown = served.cli("results", "--intent", "reuse-1")
    assert shown.returncode == 0, shown.stderr
    assert (
        "filled" in shown.stdout and "dead-lettered" in shown.stdout and "INTENT_ID_CONFLICT" in shown.stdout
    )
    missing = served.cli("results", "--intent", "never-sent")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "never-sent" in missing.stderr


def test_a_resting_limit_is_shown_as_working(served: Served) -> None:
    out = served.cli(
        "submit",
        "--intent-id",
        "rest-1",
        "--symbol",
        "BTCUSDT",
        "--side",
        "BUY",
        "--size-usd",
        "500",
        "--type",
        "LIMIT",
        "--limit-offset-pct",
        "2",
    )
    assert out.returncode == 0, out.stderr
    wait_until(lambda: served.cli("results", "--intent", "rest-1").returncode == 0, 30, "its record")
    [line] = served.cli("results", "--intent", "rest-1", "--json").stdout.splitlines()
    assert json.loads(line)["state"] == "working"
    # The console's open orders (from /api/orders) show it as our working entry.
    port = json.loads(served.endpoints_file.read_text())["metrics_port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/orders", timeout=10) as response:
        orders = json.loads(response.read())["orders"]
    assert [(o["type"], o["role"]) for o in orders] == [("LIMIT", "entry")]
