"""Fixtures of the operations tests: a fake systemd notify socket."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


class NotifySocket:
    """The receiving end of ``$NOTIFY_SOCKET``, as systemd binds it."""

    def __init__(self, address: str, sock: socket.socket) -> None:
        self.address = address
        self.sock = sock

    def receive(self, timeout_s: float = 5.0) -> str:
        """The next datagram; fails the test when none arrives within ``timeout_s``."""
        self.sock.settimeout(timeout_s)
        try:
            return self.sock.recv(4096).decode()
        except TimeoutError:
            pytest.fail(f"no notification within {timeout_s} s")

    def pending(self) -> list[str]:
        """Every datagram already queued, without waiting."""
        self.sock.setblocking(False)
        out: list[str] = []
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return out


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    # A short directory under /tmp: AF_UNIX paths are limited to 107 bytes and tmp_path can exceed it.
    with tempfile.TemporaryDirectory(prefix="qx-notify-", dir="/tmp") as directory:
        path = str(Path(directory) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        try:
            yield NotifySocket(path, sock)
        finally:
            sock.close()
