"""The `quantum-exec` commands as a user runs them: real processes, a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from quantum_exec.contracts import ExecutionResult, ResultStatus, decode_entry, encode_result_fields

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

EXE = str(Path(sys.executable).parent / "quantum-exec")


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))}
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, timeout=timeout, env={**base, **(env or {})}
    )


def stream_env(redis_url: str, names: dict[str, Any]) -> dict[str, str]:
    return {
        "QUANTUM_REDIS_URL": redis_url,
        "QUANTUM_INTENT_STREAM": names["intent_stream"],
        "QUANTUM_RESULT_STREAM": names["result_stream"],
    }


def test_help_explains_every_command() -> None:
    out = run("--help")
    assert out.returncode == 0
    for command in ("serve", "demo", "sim", "submit", "results", "check", "schema"):
        assert command in out.stdout
        assert run(command, "--help").returncode == 0


def test_schema_prints_both_json_schemas() -> None:
    out = run("schema")
    assert out.returncode == 0
    schemas = json.loads(out.stdout)
    assert {"TradeIntent", "ExecutionResult"} <= schemas.keys()
    assert "symbol" in schemas["TradeIntent"]["properties"]
    assert "protection" in schemas["ExecutionResult"]["properties"]
    assert json.loads(run("schema", "intent").stdout) == schemas["TradeIntent"]


def test_print_config_masks_secrets() -> None:
    secret = "cli-secret-value-0123456789"
    out = run("serve", "--print-config", env={"BINANCE_API_SECRET": secret, "QUANTUM_MAX_LEVERAGE": "7"})
    assert out.returncode == 0, out.stderr
    config = json.loads(out.stdout)
    assert config["max_leverage"] == 7 and config["api_secret"] == "**********"
    assert secret not in out.stdout + out.stderr


def test_bad_setting_exits_2_naming_the_variable() -> None:
    out = run(
        "serve",
        "--print-config",
        env={"QUANTUM_EXCHANGE": "live", "BINANCE_API_KEY": "k", "BINANCE_API_SECRET": "s"},
    )
    assert out.returncode == 2
    assert "QUANTUM_LIVE_CONFIRM" in out.stderr and "Traceback" not in out.stderr


def test_submit_from_flags_publishes_the_intent(redis_url: str, unique_names: dict[str, Any]) -> None:
    out = run(
        "submit",
        "--symbol",
        "btcusdt",
        "--side",
        "buy",
        "--size-usd",
        "250.5",
        "--leverage",
        "3",
        "--sl-pct",
        "1.5",
        "--tp",
        "99000",
        "--intent-id",
        "cli-1",
        env=stream_env(redis_url, unique_names),
    )
    assert out.returncode == 0, out.stderr
    stream_id = out.stdout.strip()
    client = redis.Redis.from_url(redis_url, protocol=2)
    try:
        entries = client.xrange(unique_names["intent_stream"])
    finally:
        client.close()
    assert [e[0].decode() for e in entries] == [stream_id]
    payload = decode_entry(entries[0][1])
    assert payload["symbol"] == "btcusdt" and payload["side"] == "BUY"
    assert str(payload["position_size_usd"]) == "250.5" and payload["leverage"] == 3
    assert payload["intent_id"] == "cli-1" and "timestamp" in payload


def test_submit_twap_publishes_the_execution_object(redis_url: str, unique_names: dict[str, Any]) -> None:
    env = stream_env(redis_url, unique_names)
    base = ("submit", "--symbol", "BTCUSDT", "--side", "BUY", "--quantity", "0.01")
    out = run(*base, "--twap", "5:2", env=env)
    assert out.returncode == 0, out.stderr
    client = redis.Redis.from_url(redis_url, protocol=2)
    try:
        payload = decode_entry(client.xrange(unique_names["intent_stream"])[0][1])
    finally:
        client.close()
    assert payload["execution"] == {"algo": "twap", "slices": 5, "interval_s": "2"}
    bad = run(*base, "--twap", "five", env=env)
    assert bad.returncode == 2 and "expected SLICES:INTERVAL_S" in bad.stderr
    stop = run(*base, "--type", "stop_market", "--stop-price", "99000.5", env=env)
    assert stop.returncode == 0, stop.stderr
    client = redis.Redis.from_url(redis_url, protocol=2)
    try:
        last = decode_entry(client.xrange(unique_names["intent_stream"])[-1][1])
    finally:
        client.close()
    assert (last["order_type"], str(last["stop_price"])) == ("STOP_MARKET", "99000.5")
    one = run(*base, "--twap", "1:2", env=env)
    assert one.returncode == 2 and "execution.slices: must be a whole number 2..50 (got 1)" in one.stderr


def test_submit_from_a_json_file(redis_url: str, unique_names: dict[str, Any], tmp_path: Path) -> None:
    intent_file = tmp_path / "intent.json"
    intent_file.write_text(
        json.dumps(
            {
                "symbol": "NEARUSDT",
                "side": "SELL",
                "position_size_usd": 200.0,
                "confidence": 0.72,
                "model": "ensemble",
            }
        )
    )
    out = run(
        "submit", "--file", str(intent_file), "--leverage", "2", env=stream_env(redis_url, unique_names)
    )
    assert out.returncode == 0, out.stderr
    client = redis.Redis.from_url(redis_url, protocol=2)
    try:
        payload = decode_entry(client.xrange(unique_names["intent_stream"])[0][1])
    finally:
        client.close()
    assert payload["model"] == "ensemble" and payload["leverage"] == 2


def test_submit_refuses_what_the_service_would_reject(redis_url: str, unique_names: dict[str, Any]) -> None:
    out = run("submit", "--symbol", "BTCUSDT", "--side", "BUY", env=stream_env(redis_url, unique_names))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "INVALID_FIELD: position_size_usd: required for BUY (or quantity)" in out.stderr
    client = redis.Redis.from_url(redis_url, protocol=2)
    try:
        assert client.xlen(unique_names["intent_stream"]) == 0  # nothing published
    finally:
        client.close()


def test_submit_now_restamps_an_old_sample(
    redis_url: str, unique_names: dict[str, Any], tmp_path: Path
) -> None:
    sample = tmp_path / "sample.json"
    sample.write_text(
        json.dumps({"symbol": "ETHUSDT", "side": "BUY", "quantity": 0.1, "timestamp": 1700000000000})
    )
    out = run("submit", "--file", str(sample), "--now", env=stream_env(redis_url, unique_names))
    assert out.returncode == 0, out.stderr
    client = redis.Redis.from_url(redis_url, protocol=2)
    try:
        payload = decode_entry(client.xrange(unique_names["intent_stream"])[0][1])
    finally:
        client.close()
    stamped = datetime.fromisoformat(str(payload["timestamp"]))
    assert abs((datetime.now(UTC) - stamped).total_seconds()) < 30


def test_submit_without_redis_says_how_to_fix_it(tmp_path: Path) -> None:
    out = run(
        "submit",
        "--symbol",
        "BTCUSDT",
        "--side",
        "BUY",
        "--size-usd",
        "100",
        env={"XDG_RUNTIME_DIR": str(tmp_path)},
    )
    assert out.returncode == 2
    assert "QUANTUM_REDIS_URL" in out.stderr and "Traceback" not in out.stderr


def test_results_shows_a_table_and_json_lines(redis_url: str, unique_names: dict[str, Any]) -> None:
    result = ExecutionResult(symbol="BTCUSDT", status=ResultStatus.REJECTED, intent_id="cli-res-1")
    client = redis.Redis.from_url(redis_url, protocol=2)
    try:
        client.xadd(unique_names["result_stream"], encode_result_fields(result))  # type: ignore[arg-type]
    finally:
        client.close()
    env = stream_env(redis_url, unique_names)
    table = run("results", "-n", "5", env=env)
    assert table.returncode == 0, table.stderr
    assert "cli-res-1" in table.stdout and "rejected" in table.stdout
    lines = run("results", "--json", env=env).stdout.strip().splitlines()
    assert json.loads(lines[-1])["intent_id"] == "cli-res-1"
    # Exactly the wire payload: the bytes published, not a re-encoding (decimals stay numbers).
    assert lines[-1].encode() == encode_result_fields(result)["payload"]


def test_check_fails_when_nothing_listens() -> None:
    out = run("check", env={"QUANTUM_METRICS_PORT": "1"})
    assert out.returncode == 1
    [line] = out.stderr.splitlines()  # one line saying why, no log record
    assert line.startswith("not ready: nothing answers at http://127.0.0.1:1/readyz") and not out.stdout


@pytest.mark.serial  # a wall-time bound
def test_demo_runs_end_to_end_within_30_seconds() -> None:
    started = time.monotonic()
    out = run("demo", timeout=60)
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stdout + out.stderr
    assert "demo OK" in out.stdout
    for expected in ("NOTIONAL_BELOW_MIN", "protected", "CLOSE"):
        assert expected in out.stdout
    assert elapsed < 30


def test_a_short_api_token_is_one_line_for_the_book_commands_too(tmp_path: Any) -> None:
    """The client falls back to its own settings to find the port; a bad token there is the same
    one-line refusal that serve gives, not a validation traceback."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))},
        "XDG_RUNTIME_DIR": str(tmp_path),
        "QUANTUM_API_TOKEN": "short",
    }
    for command in ("positions", "check"):
        out = run(command, env=env)
        assert out.returncode == 2, (command, out.stderr)
        assert "Traceback" not in out.stderr and "ValidationError" not in out.stderr
        assert out.stderr.strip().count("\n") == 0 and "QUANTUM_API_TOKEN" in out.stderr
