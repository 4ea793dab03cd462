"""systemd service notifications (``sd_notify``) over ``$NOTIFY_SOCKET``.

The protocol: newline-separated ``KEY=VALUE`` assignments in one datagram sent to the
``AF_UNIX``/``SOCK_DGRAM`` socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` means the
abstract namespace). ``READY=1`` after start-up, ``STOPPING=1`` when shutdown begins,
``STATUS=`` free text, ``WATCHDOG=1`` keep-alives at least every ``$WATCHDOG_USEC``.

``watchdog()`` is meant to be called from the consumer loop's progress hook, never from a timer
of its own: a loop that stops making progress then stops feeding the watchdog and systemd restarts
the service. It sends at most once per half watchdog interval, so calling it on every iteration is
cheap. Every method is a no-op without ``$NOTIFY_SOCKET`` and none ever raises.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping

from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)


class Notifier:
    """Sends sd_notify messages; build it with :meth:`from_env` in the service."""

    def __init__(
        self,
        address: str | None,
        *,
        watchdog_usec: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._address: str | None = None
        if address:
            if address.startswith("@"):
                self._address = "\0" + address[1:]
            elif address.startswith("/"):
                self._address = address
            else:
                # vsock: and other transports of newer systemd are not needed for a local service.
                log.warning("notify.unsupported_socket", address=address)
        self._interval_s = watchdog_usec / 1_000_000 / 2 if watchdog_usec and self._address else None
        self._clock = clock
        self._last_watchdog: float | None = None
        self._socket: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, watchdog: bool = True) -> Notifier:
        """From ``NOTIFY_SOCKET``, ``WATCHDOG_USEC``, ``WATCHDOG_PID``; ``watchdog=False`` never pings."""
        env = os.environ if environ is None else environ
        watchdog_usec: int | None = None
        pid = env.get("WATCHDOG_PID", "")
        if watchdog and (not pid or pid == str(os.getpid())):
            try:
                watchdog_usec = int(env.get("WATCHDOG_USEC", "0")) or None
            except ValueError:
                log.warning("notify.bad_watchdog_usec", value=env.get("WATCHDOG_USEC"))
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog_usec=watchdog_usec)

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often ``watchdog()`` actually sends (half of ``WATCHDOG_USEC``), None when disabled."""
        return self._interval_s

    def notify(self, message: str) -> bool:
        """Send one raw message (``"KEY=VALUE\\n..."``); True when it was sent."""
        if self._address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)
            self._socket.sendto(message.encode("utf-8"), self._address)
        except OSError as exc:
            # Log the first failure only: the watchdog would otherwise repeat it on every iteration.
            if not self._failed:
                self._failed = True
                log.warning("notify.send_failed", error=f"{type(exc).__name__}: {exc}")
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up is complete (``Type=notify`` units become active only now)."""
        return self.notify("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown has begun."""
        return self.notify("STOPPING=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def status(self, text: str) -> bool:
        """Free text shown by ``systemctl status``."""
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """Keep-alive, sent at most once per half ``WATCHDOG_USEC``; True when a ping went out."""
        if self._interval_s is None:
            return False
        now = self._clock()
        if self._last_watchdog is not None and now - self._last_watchdog < self._interval_s:
            return False
        sent = self.notify("WATCHDOG=1")
        if sent:
            self._last_watchdog = now
        return sent

    def close(self) -> None:
        """Release the socket; later calls reopen it."""
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()


def _one_line(text: str) -> str:
    return " ".join(text.split())
