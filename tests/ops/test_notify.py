"""sd_notify: message format, abstract sockets, watchdog rate limit, no-op and failure behaviour."""

from __future__ import annotations

import os
import socket
import uuid

from quantum_exec.ops.notify import Notifier

from .conftest import NotifySocket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ready_status_stopping(notify_socket: NotifySocket) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": notify_socket.address})
    assert notifier.enabled
    assert notifier.ready(status="consuming\nquantum:stream:trade.intent")
    assert notify_socket.receive() == "READY=1\nSTATUS=consuming quantum:stream:trade.intent"
    assert notifier.status("draining 3 in flight")
    assert notify_socket.receive() == "STATUS=draining 3 in flight"
    assert notifier.stopping()
    assert notify_socket.receive() == "STOPPING=1"
    notifier.close()


def test_watchdog_is_rate_limited_to_half_the_interval(notify_socket: NotifySocket) -> None:
    clock = FakeClock()
    notifier = Notifier(notify_socket.address, watchdog_usec=30_000_000, clock=clock)
    assert notifier.watchdog_interval_s == 15.0
    assert notifier.watchdog()  # the first call always sends
    assert notify_socket.receive() == "WATCHDOG=1"
    for _ in range(100):  # a busy loop calling it each iteration
        clock.now += 0.1
        notifier.watchdog()
    assert notify_socket.pending() == []  # 10 s later: nothing more yet
    clock.now += 5.0
    assert notifier.watchdog()
    assert notify_socket.receive() == "WATCHDOG=1"
    assert not notifier.watchdog()
    assert notify_socket.pending() == []


def test_watchdog_from_env_respects_pid_and_switch(notify_socket: NotifySocket) -> None:
    base = {"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "2000000"}
    assert Notifier.from_env(base).watchdog_interval_s == 1.0
    assert Notifier.from_env({**base, "WATCHDOG_PID": str(os.getpid())}).watchdog_interval_s == 1.0
    other_pid = Notifier.from_env({**base, "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other_pid.watchdog_interval_s is None
    assert not other_pid.watchdog()
    switched_off = Notifier.from_env(base, watchdog=False)
    assert not switched_off.watchdog()
    assert switched_off.ready()  # notifications other than the watchdog still go out
    assert notify_socket.receive() == "READY=1"
    assert notify_socket.pending() == []


def test_abstract_namespace_socket() -> None:
    name = f"qx-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(5.0)
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert receiver.recv(4096) == b"READY=1"


def test_no_socket_is_a_no_op() -> None:
    notifier = Notifier.from_env({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert not notifier.stopping()


def test_send_failure_never_raises_and_logs_once(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    notifier = Notifier(str(tmp_path / "nobody-listens"), watchdog_usec=1)
    for _ in range(3):
        assert not notifier.ready()
        assert not notifier.watchdog()
    failures = [r for r in caplog.records if r.getMessage() == "notify.send_failed"]
    assert len(failures) == 1
