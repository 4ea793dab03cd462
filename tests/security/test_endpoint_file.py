"""Another local user plants the CLI's endpoint file under the shared temp directory (no
``XDG_RUNTIME_DIR``): the directory ``quantum-exec-<uid>`` made first by them, a file pointing the
victim's ``positions`` (and its API token) at their listener, a symlinked temp file aimed at a
victim's file. Each is refused or ignored. The attacker is ``nobody`` through ``setpriv``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from security.serve_proc import clean_env, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TOKEN = "victims-api-token-0123456789abcdef"


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A stand-in for /tmp (sticky, world-writable) that both users see; TMPDIR points at it."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as another user (nobody)")
    shared = Path(tempfile.mkdtemp(prefix="qx-shared-tmp-"))
    shared.chmod(0o1777)
    try:
        yield shared
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def as_nobody(script: str) -> None:
    """Run a shell script as the attacker (uid/gid 65534)."""
    subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-ec", script],
        check=True,
        timeout=30,
    )


def victim_env(tmp_path: Path, shared: Path, **env: str) -> dict[str, str]:
    values = clean_env(tmp_path, TMPDIR=str(shared), **env)
    del values["XDG_RUNTIME_DIR"]
    return values


def test_serve_refuses_a_runtime_dir_another_user_created(tmp_path: Path, shared_tmp: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("the victim's data\n")
    planted = shared_tmp / f"quantum-exec-{os.getuid()}" / "quantum-exec"
    # The attacker's directory, open to them, with the temp name the old code wrote through.
    as_nobody(f"mkdir -p -m 0777 {planted} && ln -s {precious} {planted}/endpoints.tmp")
    out = run_cli(victim_env(tmp_path, shared_tmp), "serve", timeout_s=60)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "quantum-exec-" in lines[0] and "owned by uid 65534" in lines[0], lines
    assert precious.read_text() == "the victim's data\n"
    assert not (planted / "endpoints.json").exists()


def test_a_symlinked_runtime_dir_is_refused(tmp_path: Path, shared_tmp: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (shared_tmp / f"quantum-exec-{os.getuid()}").symlink_to(target)
    out = run_cli(victim_env(tmp_path, shared_tmp), "serve", timeout_s=60)
    assert out.returncode == 2, out.stderr
    assert "symbolic link" in out.stderr
    assert list(target.iterdir()) == []


def test_a_planted_endpoint_file_does_not_get_the_token(tmp_path: Path, shared_tmp: Path) -> None:
    """The victim's own private directory, but an endpoints.json the attacker owns (or links to)."""
    received: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        stop = threading.Event()

        def listen() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.settimeout(2)
                    with contextlib.suppress(OSError):
                        received.append(conn.recv(65536))

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        try:
            base = shared_tmp / f"quantum-exec-{os.getuid()}"
            private = base / "quantum-exec"
            private.mkdir(parents=True)
            base.chmod(0o700)
            private.chmod(0o700)
            fake = {"redis_url": f"redis://127.0.0.1:{port}/0", "metrics_port": port, "pid": os.getpid()}
            attacker_file = tmp_path / "attacker.json"
            attacker_file.write_text(json.dumps(fake))
            attacker_file.chmod(0o644)
            os.chown(attacker_file, 65534, 65534)
            env = victim_env(tmp_path, shared_tmp, QUANTUM_API_TOKEN=TOKEN)
            for plant in ("copy owned by nobody", "symlink"):
                endpoints = private / "endpoints.json"
                endpoints.unlink(missing_ok=True)
                if plant == "symlink":
                    endpoints.symlink_to(attacker_file)
                else:
                    shutil.copy(attacker_file, endpoints)
                    os.chown(endpoints, 65534, 65534)
                run_cli(env, "positions", "--json", timeout_s=60)
                results = run_cli(env, "results", timeout_s=60)
                assert results.returncode == 2, (plant, results.stderr)
                assert "no running `quantum-exec serve`" in results.stderr, (plant, results.stderr)
        finally:
            stop.set()
            thread.join(5)
    assert not any(TOKEN.encode() in chunk for chunk in received)
    assert received == []
