"""`quantum-exec serve` on the embedded defaults, killed with SIGKILL and started again: the private
Redis dies with it, keeps its data in the state directory, and every intent published before the
kill gets exactly one result after the restart."""

from __future__ import annotations

import json
import os
import signal
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

    def start(self) -> redis.Redis:
        self.proc = subprocess.Popen([EXE, "serve"], env=self.env, stdout=self.log, stderr=self.log)
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
