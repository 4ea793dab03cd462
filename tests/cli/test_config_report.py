"""An unknown ``QUANTUM_*`` variable is reported by every command that reads the settings, not only
``serve``: once, on stderr, one line per name, never a traceback (real processes, a real Redis)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

EXE = str(Path(sys.executable).parent / "quantum-exec")
TYPOS = {
    "QUANTUM_MAX_CONCURENCY": "QUANTUM_MAX_CONCURRENCY",
    "QUANTUM_RESULT_STREEM": "QUANTUM_RESULT_STREAM",
}

COMMANDS = [
    ["results", "-n", "1"],
    ["results", "--intent", "nope"],
    ["submit", "--symbol", "BTCUSDT", "--side", "BUY", "--size-usd", "100", "--no-check"],
    ["positions"],
    ["trades"],
    ["summary"],
    ["check"],
    ["halt"],
    ["limits"],
    ["gateway"],
    ["notify"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_every_command_reports_an_unknown_variable_once(
    command: list[str], redis_url: str, tmp_path: Path
) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))}
    env = {
        **base,
        **dict.fromkeys(TYPOS, "4"),
        "QUANTUM_REDIS_URL": redis_url,
        "QUANTUM_METRICS_PORT": "1",  # nothing listens: the HTTP readers fail in one line
        "HOME": str(tmp_path),
        "XDG_RUNTIME_DIR": str(tmp_path),
    }
    out = subprocess.run([EXE, *command], capture_output=True, text=True, timeout=60, env=env)
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    lines = out.stderr.splitlines()
    for typo, meant in TYPOS.items():
        said = [line for line in lines if typo in line]
        assert said == [f"quantum-exec: warning: {typo} is not a setting (did you mean {meant}?)"], out.stderr
