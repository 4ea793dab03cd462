"""run_in_thread with the synchronous python-binance Client, and ``python -m binance_sim`` as a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from binance import Client

from binance_sim import SimConfig, run_in_thread

pytestmark = pytest.mark.timeout(30)


def test_run_in_thread_with_sync_client() -> None:
    with run_in_thread(SimConfig(rate_limits=False)) as base_url:
        client = Client("quantum-sim-key", "quantum-sim-secret", ping=False)
        client.FUTURES_URL = base_url + "/fapi"
        result = client.futures_create_order(
            symbol="ETHUSDT", side="BUY", type="MARKET", quantity="0.100", newOrderRespType="RESULT"
        )
        assert result["status"] == "FILLED" and result["avgPrice"] == "3105.42"
        (trade,) = client.futures_account_trades(symbol="ETHUSDT")
        assert trade["commission"] == "0.15527100"
    with pytest.raises(OSError):
        urllib.request.urlopen(base_url + "/fapi/v1/ping", timeout=2)  # stopped on exit


def test_module_cli_serves_and_exits_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "binance_sim", "--port", "0", "--latency-ms", "0", "--no-rate-limits"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        base_url = line.split()[3]
        with urllib.request.urlopen(base_url + "/fapi/v1/time", timeout=5) as response:
            assert response.headers["Content-Type"].startswith("application/json")
            assert b"serverTime" in response.read()
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
