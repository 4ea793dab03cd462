"""run_in_thread with the synchronous python-binance Client, and ``python -m binance_sim`` as a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal

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


MARKET_FLAGS = [
    "--slippage-bps",
    "2",
    "--depth",
    "50000",
    "--depth",
    "btcusdt=250000",
    "--spread-bps",
    "1.5",
    "--level-bps",
    "3",
    "--walk",
    "0.001",
    "--walk-interval",
    "0.5",
    "--walk-seed",
    "7",
    "--funding-interval",
    "3600",
    "--funding-rate",
    "0.0002",
    "--no-liquidation",
]


def test_market_flags_make_the_same_config_from_both_entry_points() -> None:
    from binance_sim import BookConfig, FundingConfig, WalkConfig, config_from_args
    from binance_sim.options import build_parser
    from quantum_exec.app.cli import build_parser as quantum_exec_parser

    config = config_from_args(build_parser().parse_args(MARKET_FLAGS))
    assert config.slippage_bps == Decimal(2)
    assert config.book == BookConfig(
        depth_notional=Decimal(50_000),
        depth_by_symbol={"BTCUSDT": Decimal(250_000)},
        spread_bps=Decimal("1.5"),
        level_bps=Decimal(3),
    )
    assert config.walk == WalkConfig(volatility=Decimal("0.001"), interval_s=0.5, seed=7)
    assert config.funding == FundingConfig(interval_ms=3_600_000, auto=True, default_rate=Decimal("0.0002"))
    assert config.liquidation is False
    assert config_from_args(quantum_exec_parser().parse_args(["sim", *MARKET_FLAGS])) == config


def test_market_flag_defaults_keep_the_plain_fill_and_settle_funding_on_each_symbols_interval() -> None:
    from binance_sim import config_from_args
    from binance_sim.options import build_parser
    from quantum_exec.app.cli import build_parser as quantum_exec_parser

    config = config_from_args(build_parser().parse_args([]))
    assert config.book.depth_of("BTCUSDT") is None and config.walk.volatility is None
    # interval_ms None: each symbol's own (8 h, RENDERUSDT 4 h in the fixture); same from quantum-exec sim.
    assert (config.funding.interval_ms, config.funding.auto, config.liquidation) == (None, True, True)
    assert config_from_args(quantum_exec_parser().parse_args(["sim"])).funding.interval_ms is None
    assert config_from_args(build_parser().parse_args(["--no-funding"])).funding.auto is False
    with pytest.raises(ValueError, match="--depth"):
        config_from_args(build_parser().parse_args(["--depth", "BTCUSDT=lots"]))
    with pytest.raises(ValueError, match="--walk"):
        config_from_args(build_parser().parse_args(["--walk", "-0.1"]))
