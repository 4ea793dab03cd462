"""Who may read what on the metrics port: one rule for ``/api/*``, the console and ``/metrics``.

Without ``QUANTUM_API_TOKEN`` only *local* clients are answered: the connection comes from a
loopback address **and** the ``Host`` header names this host as loopback (``localhost``,
``127.0.0.1`` or ``[::1]``, with the port the connection reached, or no port). The Host check is
what stops a DNS-rebinding page in the operator's browser: its requests come from loopback but
carry the attacker's host name. With a token, a bearer token is required from anywhere, compared
in constant time; ``QUANTUM_METRICS_TOKEN`` is a second token that opens the confidential series
of ``/metrics`` (per-symbol PnL and notional) and nothing else, for Prometheus' ``authorization``.

A wrong token is throttled per source address (a small token bucket of failures): past the burst,
the address gets 429 with ``Retry-After`` before its token is even compared, so guessing costs
time and the log does not fill.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

import orjson
from aiohttp import web

from quantum_exec.core.settings import Settings
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

LOCAL_HOSTS: Final = frozenset({"localhost", "127.0.0.1", "[::1]"})
# Failed token checks a source address may make at once, then one more every FAILURE_REFILL_S.
FAILURE_BURST: Final = 10
FAILURE_REFILL_S: Final = 2.0
# Source addresses remembered per bucket kind (the least recently seen are forgotten first).
MAX_TRACKED: Final = 4096


def json_error(
    status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    """The API's error shape: ``{"error": {"message": ..., ...}}``."""
    body = orjson.dumps({"error": {"message": message, **extra}})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def local_host(request: web.BaseRequest) -> bool:
    """The ``Host`` header names loopback and the port this connection reached (or none).

    A request without ``Host`` (HTTP/1.0 tools) passes: a browser, the rebinding vector, always
    sends one.
    """
    if "Host" not in request.headers:
        return True
    raw = request.headers["Host"].strip().lower()
    end = raw.find("]") + 1 if raw.startswith("[") else len(raw.partition(":")[0])
    name, rest = raw[:end], raw[end:]
    if name not in LOCAL_HOSTS or (rest and not rest.startswith(":")):
        return False
    if not rest:
        return True
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    return rest[1:].isdigit() and sockname is not None and int(rest[1:]) == int(sockname[1])


class AddressBuckets:
    """A token bucket per source address: ``burst`` at once, then one more every ``refill_s``.

    :meth:`wait_s` is how long an empty bucket must wait (whole seconds, for ``Retry-After``).
    """

    def __init__(self, burst: int, refill_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._burst = burst
        self._refill_s = refill_s
        self._clock = clock
        # address -> (tokens, at); the least recently used are forgotten first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _tokens(self, address: str) -> float:
        tokens, at = self._buckets.get(address, (float(self._burst), self._clock()))
        return min(float(self._burst), tokens + (self._clock() - at) / self._refill_s)

    def wait_s(self, address: str) -> int:
        """0 when the address may go on; else whole seconds until it may."""
        if address not in self._buckets:
            return 0
        missing = 1.0 - self._tokens(address)
        return 0 if missing <= 0 else max(1, math.ceil(missing * self._refill_s))

    def take(self, address: str) -> None:
        self._buckets[address] = (self._tokens(address) - 1.0, self._clock())
        self._buckets.move_to_end(address)
        while len(self._buckets) > MAX_TRACKED:
            self._buckets.popitem(last=False)


class Access:
    """The access rule of the metrics port, built from the settings (tokens may be unset)."""

    def __init__(self, api_token: str = "", metrics_token: str = "") -> None:
        self._api_token = api_token.encode()
        self._metrics_token = metrics_token.encode()
        self._failures = AddressBuckets(FAILURE_BURST, FAILURE_REFILL_S)

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        api = settings.api_token.get_secret_value() if settings.api_token else ""
        scrape = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
        return cls(api, scrape)

    @property
    def token_mode(self) -> bool:
        """True when ``QUANTUM_API_TOKEN`` is set: bearer tokens, no loopback exception."""
        return bool(self._api_token)

    @staticmethod
    def local(request: web.BaseRequest) -> bool:
        return is_loopback(request.remote) and local_host(request)

    def check_api(self, request: web.BaseRequest) -> web.Response | None:
        """None when ``request`` may read the API or the console, else the refusal to send."""
        if self.token_mode:
            return self._check_bearer(request, (self._api_token,))
        if not is_loopback(request.remote):
            metrics.HTTP_REFUSED.labels(reason="not_loopback").inc()
            return json_error(
                403,
                "the API answers loopback clients only while QUANTUM_API_TOKEN is unset: "
                "set QUANTUM_API_TOKEN and send it as a bearer token",
                setting="QUANTUM_API_TOKEN",
            )
        if not local_host(request):
            metrics.HTTP_REFUSED.labels(reason="host").inc()
            return json_error(
                421,
                f"Host {request.headers.get('Host', '')!r} is not this host: without QUANTUM_API_TOKEN "
                "the port answers Host localhost, 127.0.0.1 or [::1] with its own port only",
                setting="QUANTUM_API_TOKEN",
            )
        return None

    def check_scrape(self, request: web.BaseRequest) -> tuple[bool, web.Response | None]:
        """Whether a ``/metrics`` scrape gets the confidential series, or the refusal of a wrong token.

        A scrape without credentials is never refused: it gets the operational series only,
        unless it is local and no API token is set.
        """
        tokens = tuple(t for t in (self._api_token, self._metrics_token) if t)
        if tokens and "Authorization" in request.headers:
            refusal = self._check_bearer(request, tokens)
            return refusal is None, refusal
        return (not self.token_mode and self.local(request)), None

    def _check_bearer(self, request: web.BaseRequest, tokens: tuple[bytes, ...]) -> web.Response | None:
        address = request.remote or "?"
        wait_s = self._failures.wait_s(address)
        if wait_s:
            metrics.HTTP_REFUSED.labels(reason="throttled").inc()
            return json_error(
                429,
                f"too many wrong tokens from {address}: retry in {wait_s} s",
                headers={"Retry-After": str(wait_s)},
            )
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        given = value.strip().encode()
        # Every configured token is compared, so the time taken does not say which one was close.
        matches = [hmac.compare_digest(given, token) for token in tokens]
        if scheme.lower() == "bearer" and any(matches):
            return None
        self._failures.take(address)
        metrics.HTTP_REFUSED.labels(reason="unauthorized").inc()
        if self._failures.wait_s(address):
            log.warning(
                "http.token_throttled",
                remote=address,
                path=request.path,
                retry_after_s=self._failures.wait_s(address),
            )
        return json_error(401, "missing or wrong bearer token (Authorization: Bearer <QUANTUM_API_TOKEN>)")
