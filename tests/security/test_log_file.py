"""QUANTUM_LOG_FILE holds the order flow, positions and account details: serve creates it 0600
(and its directory 0700) under an ordinary 022 umask, tightens a file an older version left
0644, and every file a rotation starts is 0600 too."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from quantum_exec.ops.logs import PrivateRotatingFileHandler
from security.serve_proc import Serve
from support.waiting import wait_until

pytestmark = [pytest.mark.timeout(120)]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.integration
def test_serve_creates_its_log_file_private(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "quantum-exec.log"
    left = tmp_path / "left.log"
    left.write_text("")
    left.chmod(0o644)
    for path in (log_file, left):
        serve = Serve(tmp_path, QUANTUM_LOG_FILE=str(path))
        try:
            serve.start(umask=0o022)
            wait_until(lambda p=path: p.exists() and p.stat().st_size > 0, 30, "the log file")
        finally:
            serve.stop()
        assert mode(path) == 0o600, oct(mode(path))
    assert mode(log_file.parent) == 0o700


def test_rotated_log_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "rotating.log"
    previous = os.umask(0o022)
    handler = PrivateRotatingFileHandler(path, maxBytes=200, backupCount=2, encoding="utf-8")
    try:
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "x" * 150, None, None)
        for _ in range(5):
            handler.emit(record)
    finally:
        handler.close()
        os.umask(previous)
    files = sorted(tmp_path.glob("rotating.log*"))
    assert len(files) == 3
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
