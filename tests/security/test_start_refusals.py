"""Settings that would expose the keys of a real account stop ``serve`` with one line naming them:
an exchange URL without TLS for live, demo and testnet (an on-path attacker reads the API key and
the signed orders), and for live an EnvironmentFile or private key that other users can read
(elsewhere that is a warning)."""

from __future__ import annotations

from pathlib import Path

import pytest

from security.serve_proc import Serve, clean_env, run_cli
from support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEYS = {"BINANCE_API_KEY": "k" * 64, "BINANCE_API_SECRET": "s" * 64}
# Never reached: every case here must stop before connecting anywhere.
NOWHERE = {"QUANTUM_REDIS_URL": "redis://127.0.0.1:9/0"}


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize(
    ("exchange", "variable", "url"),
    [
        ("testnet", "QUANTUM_BINANCE_BASE_URL", "http://127.0.0.1:9"),
        ("demo", "QUANTUM_BINANCE_BASE_URL", "http://127.0.0.1:9"),
        ("live", "QUANTUM_BINANCE_BASE_URL", "http://127.0.0.1:9"),
        ("testnet", "QUANTUM_BINANCE_STREAM_URL", "ws://127.0.0.1:9"),
        ("live", "QUANTUM_BINANCE_WS_API_URL", "ws://127.0.0.1:9/ws-fapi/v1"),
    ],
)
def test_a_clear_text_exchange_url_is_refused(tmp_path: Path, exchange: str, variable: str, url: str) -> None:
    env = clean_env(
        tmp_path, **KEYS, **NOWHERE, QUANTUM_EXCHANGE=exchange, QUANTUM_LIVE_CONFIRM="yes", **{variable: url}
    )
    out = run_cli(env, "serve", timeout_s=30)
    assert out.returncode == 2
    line = one_line(out.stderr)
    assert f"{variable}={url}" in line and "https://" in line


def loose(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o644)
    return path


def test_live_refuses_a_loose_env_file_or_key(tmp_path: Path) -> None:
    env_file = loose(tmp_path / "execution.env", "QUANTUM_MAX_LEVERAGE=5\n")
    key = loose(tmp_path / "ed25519.pem", "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n")
    live = clean_env(
        tmp_path,
        **NOWHERE,
        QUANTUM_EXCHANGE="live",
        QUANTUM_LIVE_CONFIRM="yes",
        QUANTUM_BINANCE_BASE_URL="https://127.0.0.1:9",
        BINANCE_API_KEY="k" * 64,
    )
    hmac = {**live, "BINANCE_API_SECRET": "s" * 64}
    out = run_cli(hmac, "serve", "--env-file", str(env_file), timeout_s=30)
    assert out.returncode == 2
    line = one_line(out.stderr)
    assert str(env_file) in line and f"chmod 600 {env_file}" in line
    out = run_cli({**live, "BINANCE_PRIVATE_KEY_FILE": str(key)}, "serve", timeout_s=30)
    assert out.returncode == 2
    line = one_line(out.stderr)
    assert str(key) in line and f"chmod 600 {key}" in line


def test_sim_only_warns_about_a_loose_env_file(tmp_path: Path) -> None:
    env_file = loose(tmp_path / "execution.env", "QUANTUM_MAX_LEVERAGE=5\n")
    serve = Serve(tmp_path)
    try:
        serve.start(args=("--env-file", str(env_file)))
        wait_until(lambda: "secrets.file_permissions" in serve.output(), 30, "the warning")
    finally:
        serve.stop()
    assert f"chmod 600 {env_file}" in serve.output()
