"""Every operator mistake is one line on stderr naming the setting or argument, exit code 2, no
traceback: real processes, a real Redis (and a real second `serve` for the state directory)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

EXE = str(Path(sys.executable).parent / "quantum-exec")


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))}
    return subprocess.run(
        [EXE, *args], capture_output=True, text=True, timeout=timeout, env={**base, **(env or {})}
    )


def one_line(out: subprocess.CompletedProcess[str], *names: str) -> str:
    """The single stderr line of a refused command (rc 2), which names each of ``names``."""
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr[-2000:]
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("url", ["notaurl", "http://127.0.0.1:6379", "redis://h/abc", "redis://h:99999/0"])
def test_a_malformed_redis_url(url: str) -> None:
    for command in (["results"], ["serve"], ["submit", "--symbol", "BTCUSDT", "--side", "BUY"]):
        one_line(run(*command, env={"QUANTUM_REDIS_URL": url}), "QUANTUM_REDIS_URL")


def test_a_password_in_a_malformed_url_is_not_echoed() -> None:
    line = one_line(
        run("results", env={"QUANTUM_REDIS_URL": "redis://u:hunter2secret@h/x"}), "QUANTUM_REDIS_URL"
    )
    assert "hunter2secret" not in line


def test_a_database_index_the_server_does_not_have(redis_url: str, tmp_path: Path) -> None:
    assert redis_url.startswith("unix://") and "db=" in redis_url  # the session's private server
    url = redis_url.replace("db=0", "db=99")
    one_line(run("results", env={"QUANTUM_REDIS_URL": url}), "QUANTUM_REDIS_URL", "99", "out of range")
    env = {"QUANTUM_REDIS_URL": url, "QUANTUM_METRICS_PORT": "0", "QUANTUM_STATE_DIR": str(tmp_path)}
    one_line(run("serve", env=env), "QUANTUM_REDIS_URL", "99")


def test_submit_and_results_while_redis_is_down() -> None:
    env = {"QUANTUM_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    one_line(run("results", env=env), "QUANTUM_REDIS_URL", "not reachable")
    submit = run("submit", "--symbol", "BTCUSDT", "--side", "BUY", "--size-usd", "500", env=env)
    one_line(submit, "QUANTUM_REDIS_URL", "not reachable")


@pytest.mark.parametrize("count", ["0", "-3", "x"])
def test_results_count_must_be_positive(count: str) -> None:
    out = run("results", "-n", count)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    # argparse: the subcommand's own usage, then the one error line naming the argument.
    assert out.stderr.startswith("usage: quantum-exec results")
    assert "-n/--count" in out.stderr.splitlines()[-1]


def test_submit_file_missing_or_not_json(tmp_path: Path) -> None:
    one_line(run("submit", "--file", str(tmp_path / "nope.json")), "--file", "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    one_line(run("submit", "--file", str(bad)), "--file", "not JSON")


def test_an_unusable_state_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {"QUANTUM_STATE_DIR": str(blocker / "state"), "QUANTUM_METRICS_PORT": "0"}
    one_line(run("serve", env=env), "QUANTUM_STATE_DIR", str(blocker / "state"))
    # Unset, it comes from $HOME: an unusable home is named as such (the image's /nonexistent).
    home = {"HOME": str(blocker), "XDG_STATE_HOME": "", "QUANTUM_METRICS_PORT": "0"}
    one_line(run("serve", env=home), "QUANTUM_STATE_DIR", "$HOME")


def test_settings_that_contradict_each_other() -> None:
    out = run("serve", "--print-config", env={"QUANTUM_DEFAULT_LEVERAGE": "50", "QUANTUM_MAX_LEVERAGE": "20"})
    one_line(out, "QUANTUM_DEFAULT_LEVERAGE=50", "QUANTUM_MAX_LEVERAGE=20")


def test_a_second_serve_on_the_same_state_directory(tmp_path: Path) -> None:
    env = {
        "QUANTUM_STATE_DIR": str(tmp_path / "state"),
        "QUANTUM_METRICS_PORT": "0",
        "QUANTUM_WATCHDOG": "false",
        "XDG_RUNTIME_DIR": str(tmp_path / "run1"),
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith(("QUANTUM_", "BINANCE_"))}
    with (tmp_path / "first.log").open("wb") as log:
        first = subprocess.Popen([EXE, "serve"], env={**base, **env}, stdout=log, stderr=log)
        try:
            endpoints = tmp_path / "run1" / "quantum-exec" / "endpoints.json"
            wait_until(endpoints.exists, 60, "the first serve to be ready")
            second = run("serve", env={**env, "XDG_RUNTIME_DIR": str(tmp_path / "run2")})
            one_line(second, "QUANTUM_STATE_DIR", "in use by another quantum-exec process")
        finally:
            first.terminate()
            first.wait(timeout=60)


def test_unknown_variables_and_malformed_env_lines_are_reported(tmp_path: Path) -> None:
    env_file = tmp_path / "execution.env"
    env_file.write_text("QUANTUM_LOG_FORMAT=text\nthis line sets nothing\n1BAD=x\n")
    with socket.socket() as holder:  # refused right after the report: nothing else starts
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        out = run(
            "serve",
            "--env-file",
            str(env_file),
            env={
                "QUANTUM_MAX_CONCURENCY": "4",
                # The notifier's and the gateway's own variables are theirs to check: not reported.
                "QUANTUM_NOTIFY_MIN_INTERVAL_MS": "1000",
                "QUANTUM_GATEWAY_PORT": "9110",
                "QUANTUM_METRICS_PORT": str(port),
                "QUANTUM_STATE_DIR": str(tmp_path / "state"),
            },
        )
    assert out.returncode == 2
    reported = [line for line in (out.stdout + out.stderr).splitlines() if "settings.ignored" in line]
    assert len(reported) == 3, out.stderr
    text = "\n".join(reported)
    assert "QUANTUM_MAX_CONCURENCY is not a setting (did you mean QUANTUM_MAX_CONCURRENCY?)" in text
    assert f"{env_file}:2: no '='" in text and f"{env_file}:3: '1BAD' is not a variable name" in text
