"""The edge processes read their secrets from an EnvironmentFile as the service does: the gateway's
holds the producers' secrets (``QUANTUM_GATEWAY_SOURCES`` inline), the notifier's the bot token and
webhook URLs. A file group or others can read is named at start, as ``serve`` names its own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SERVICES = Path(__file__).resolve().parents[2] / "services"


def _spawn(command: str, env_file: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))}
    env.pop("CREDENTIALS_DIRECTORY", None)
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "quantum_exec.app.cli", command, "--env-file", str(env_file)],
            env={**env, "PYTHONPATH": str(SERVICES)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _lines(**values: str) -> str:
    return "".join(f"{k}={v}\n" for k, v in values.items())


@pytest.mark.parametrize("command", ["gateway", "notify"])
async def test_a_loose_edge_env_file_is_named_at_start(
    command: str, redis_url: str, unique_names: dict[str, Any], tmp_path: Path
) -> None:
    common = {
        "QUANTUM_REDIS_URL": redis_url,
        "QUANTUM_INTENT_STREAM": unique_names["intent_stream"],
        "QUANTUM_RESULT_STREAM": unique_names["result_stream"],
        "QUANTUM_KEY_PREFIX": unique_names["key_prefix"],
        "QUANTUM_RISK_STREAM": unique_names["key_prefix"] + ":risk",
        "QUANTUM_METRICS_PORT": "1",
    }
    if command == "gateway":
        sources = {"bot": {"kind": "hmac", "secret": "bot-secret-0123456789-abcdefghij"}}
        own = {"QUANTUM_GATEWAY_PORT": "0", "QUANTUM_GATEWAY_SOURCES": f"'{json.dumps(sources)}'"}
        started = "gateway.listening"
    else:
        own = {
            "QUANTUM_NOTIFY_TELEGRAM_TOKEN": "4839574812:AAFD39kkdpWt3ywyRZergyOLMaJhac60qc",
            "QUANTUM_NOTIFY_TELEGRAM_CHAT_ID": "-100123",
            "QUANTUM_NOTIFY_TELEGRAM_API": "http://127.0.0.1:1",
            "QUANTUM_NOTIFY_SUMMARY_HOUR": "off",
        }
        started = "notify.started"
    env_file = tmp_path / f"{command}.env"
    env_file.write_text(_lines(**common, **own))
    env_file.chmod(0o644)
    log = tmp_path / f"{command}.log"
    proc = _spawn(command, env_file, log)
    try:
        await wait_for(lambda: started in log.read_text(), 30, f"{command} started")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    output = log.read_text()
    warnings = [line for line in output.splitlines() if "secrets.file_permissions" in line]
    assert warnings and str(env_file) in warnings[0] and "chmod 600" in warnings[0], output[-1500:]
