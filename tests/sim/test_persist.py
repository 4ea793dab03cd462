"""A paper account that survives restarts: ``--state FILE`` (and ``serve``'s state directory)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from binance import Client

from binance_sim import SimConfig, run_in_thread
from support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)


def _client(base_url: str) -> Client:
    client = Client("quantum-sim-key", "quantum-sim-secret", ping=False)
    client.FUTURES_URL = base_url + "/fapi"
    return client


def _state(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(base_url + "/_sim/state", timeout=5) as reply:
        state: dict[str, Any] = json.loads(reply.read())
    return state


def test_the_account_survives_a_clean_restart(tmp_path: Path) -> None:
    path = tmp_path / "account.pickle"
    config = SimConfig(rate_limits=False, state_path=path)
    with run_in_thread(config) as base_url:
        client = _client(base_url)
        first = client.futures_create_order(
            symbol="ETHUSDT", side="BUY", type="MARKET", quantity="0.100", newOrderRespType="RESULT"
        )
        before = _state(base_url)
    assert path.exists() and oct(path.stat().st_mode & 0o777) == "0o600"
    with run_in_thread(config) as base_url:
        after = _state(base_url)
        client = _client(base_url)
        [position] = [
            p for p in client.futures_position_information(symbol="ETHUSDT") if p["positionAmt"] != "0"
        ]
        assert position["positionAmt"] == "0.100"
        assert client.futures_get_order(symbol="ETHUSDT", orderId=first["orderId"])["status"] == "FILLED"
        second = client.futures_create_order(
            symbol="ETHUSDT", side="SELL", type="MARKET", quantity="0.100", newOrderRespType="RESULT"
        )
        assert second["orderId"] > first["orderId"]  # ids keep increasing across restarts
    for name in ("positions", "orders", "trades", "leverage", "marginType"):
        assert after[name] == before[name], name
    wallet = [(b["asset"], b["walletBalance"]) for b in before["balances"]]
    assert [(b["asset"], b["walletBalance"]) for b in after["balances"]] == wallet


def test_a_sigkilled_simulator_keeps_what_it_had_saved(tmp_path: Path) -> None:
    path = tmp_path / "account.pickle"
    args = [sys.executable, "-m", "binance_sim", "--port", "0", "--no-rate-limits", "--state", str(path)]

    def start() -> tuple[subprocess.Popen[str], str]:
        process = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert process.stdout is not None
        return process, process.stdout.readline().split()[3]

    process, base_url = start()
    try:
        _client(base_url).futures_create_order(
            symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.002", newOrderRespType="RESULT"
        )
        wait_until(lambda: path.exists() and b"BTCUSDT" in path.read_bytes(), 10, "the account saved")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        process, base_url = start()
        amounts = {p["symbol"]: p["positionAmt"] for p in _state(base_url)["positions"]}
        assert amounts["BTCUSDT"] == "-0.002"
    finally:
        process.kill()
        process.wait(10)


def test_order_amendments_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "account.pickle"
    config = SimConfig(rate_limits=False, state_path=path)
    with run_in_thread(config) as base_url:
        client = _client(base_url)
        order = client.futures_create_order(
            symbol="ETHUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.100", price="3000"
        )
        client.futures_modify_order(
            symbol="ETHUSDT", orderId=order["orderId"], side="BUY", quantity="0.100", price="3001"
        )
        before = client.futures_v1_get_order_amendment(symbol="ETHUSDT", orderId=order["orderId"])
    with run_in_thread(config) as base_url:
        client = _client(base_url)
        after = client.futures_v1_get_order_amendment(symbol="ETHUSDT", orderId=order["orderId"])
        assert after == before and len(after) == 1
        assert after[0]["amendment"]["price"] == {"before": "3000.00", "after": "3001.00"}
        client.futures_modify_order(
            symbol="ETHUSDT", orderId=order["orderId"], side="BUY", quantity="0.100", price="3002"
        )
        again = client.futures_v1_get_order_amendment(symbol="ETHUSDT", orderId=order["orderId"])
    # Ids and the per-order count go on from the saved ones.
    assert [(a["amendmentId"], a["amendment"]["count"]) for a in again] == [(1, 1), (2, 2)]
