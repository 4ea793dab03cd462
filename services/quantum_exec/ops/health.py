"""The operations HTTP server (``/metrics``, ``/healthz``, ``/readyz``) and the ``check`` command.

``/healthz`` answers 200 while the process serves HTTP at all. Every registered readiness check
runs concurrently, each under a short timeout, on a timer (every :data:`READINESS_INTERVAL_S`);
``/readyz`` answers the last outcome, 200 only when all passed, otherwise 503 with a JSON body
naming the failing checks. No request runs a check: a flood of scrapes costs Redis nothing.

``/metrics`` follows the API's access rule (:mod:`quantum_exec.ops.access`) for the series in
:data:`metrics.CONFIDENTIAL` (per-symbol PnL and notional); any other scrape gets the rest. A body
is encoded afresh at most :data:`ENCODES_PER_S` times a second (after a small burst); past that a
scrape gets the last body of its kind again. One source address may scrape :data:`SCRAPES_PER_S`
times a second (after a burst); past that it gets a short 429 with ``Retry-After``. A flood of
scrapes then costs the event loop a parse and a few bytes per request, not the order path's time.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from quantum_exec.core.aio import cancel_task
from quantum_exec.core.settings import Settings
from quantum_exec.ops import metrics
from quantum_exec.ops.access import Access, AddressBuckets, json_error
from quantum_exec.ops.listener import HEAD_TIMEOUT_S, MAX_CONNECTIONS, Listener
from quantum_exec.ops.logs import get_logger, redact

log = get_logger(__name__)

ReadinessCheck = Callable[[], Awaitable[bool | str | None]]
"""An async callable: returns ``None``/``True`` when ready; ``False``, a string saying why, or an
exception means not ready."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CHECK_TIMEOUT_S = 2.0
READINESS_INTERVAL_S = 1.0
# Fresh /metrics encodings: a burst of ENCODE_BURST, then ENCODES_PER_S (one encoding of the whole
# registry holds the event loop for milliseconds); more scrapes get the last body of their kind.
ENCODE_BURST = 4
ENCODES_PER_S = 1.0
# Scrapes one source address may make: a burst of SCRAPE_BURST, then SCRAPES_PER_S (Prometheus
# asks once per scrape interval; faster than this is a loop or a flood, answered 429).
SCRAPE_BURST = 10
SCRAPES_PER_S = 5.0
CLIENT_TIMEOUT_S = 3.0
_MAX_ERROR_CHARS = 200
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    ok: bool
    error: str | None
    duration_s: float


async def _run_check(name: str, check: ReadinessCheck, timeout_s: float) -> CheckResult:
    start = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            outcome = await check()
    except TimeoutError:
        return CheckResult(name, False, f"timed out after {timeout_s:g} s", time.monotonic() - start)
    except Exception as exc:
        # The body is served over HTTP: short, and scrubbed of anything a URL or message may carry.
        error = redact(f"{type(exc).__name__}: {exc}")[:_MAX_ERROR_CHARS]
        return CheckResult(name, False, error, time.monotonic() - start)
    if isinstance(outcome, str):
        return CheckResult(name, False, redact(outcome)[:_MAX_ERROR_CHARS], time.monotonic() - start)
    if outcome is False:
        return CheckResult(name, False, "check returned false", time.monotonic() - start)
    return CheckResult(name, True, None, time.monotonic() - start)


class _Without:
    """A view of a registry without some metric families (the public /metrics)."""

    def __init__(self, registry: CollectorRegistry, names: frozenset[str]) -> None:
        self._registry = registry
        self._names = names

    def collect(self) -> Iterable[Metric]:
        return (family for family in self._registry.collect() if family.name not in self._names)


class _Exposition:
    """The /metrics bodies, encoded afresh :data:`ENCODE_BURST` times, then :data:`ENCODES_PER_S`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._full = registry
        self._public = CollectorRegistry()
        self._public.register(_Without(registry, metrics.CONFIDENTIAL))
        self._tokens = float(ENCODE_BURST)
        self._at = time.monotonic()
        self._last: dict[tuple[bool, str], bytes] = {}
        self._locks: defaultdict[tuple[bool, str], asyncio.Lock] = defaultdict(asyncio.Lock)

    async def body(self, accept: str, *, confidential: bool) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        key = (confidential, content_type)
        # One encoding of a kind at a time; scrapes arriving meanwhile wait for it, then take it
        # unless the budget allows another.
        async with self._locks[key]:
            now = time.monotonic()
            self._tokens = min(float(ENCODE_BURST), self._tokens + (now - self._at) * ENCODES_PER_S)
            self._at = now
            if self._tokens < 1 and key in self._last:
                return self._last[key], content_type
            self._tokens -= 1
            # Encoding the registry takes milliseconds of pure Python: in a worker thread the event
            # loop gets the interpreter back within the switch interval instead of after the body.
            registry = self._full if confidential else self._public
            body = self._last[key] = await asyncio.to_thread(encoder, registry)
            return body, content_type


class MetricsServer:
    """aiohttp server for the operations endpoints; ``port`` is the bound port once started."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        checks: Sequence[tuple[str, ReadinessCheck]] = (),
        registry: CollectorRegistry = metrics.REGISTRY,
        check_timeout_s: float = CHECK_TIMEOUT_S,
        access: Access | None = None,
        readiness_interval_s: float = READINESS_INTERVAL_S,
        max_connections: int = MAX_CONNECTIONS,
        head_timeout_s: float = HEAD_TIMEOUT_S,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._exposition = _Exposition(registry)
        self._check_timeout_s = check_timeout_s
        self._checks: dict[str, ReadinessCheck] = {}
        self._stopping = False
        self.access = access or Access()
        self._scrapes = AddressBuckets(SCRAPE_BURST, 1.0 / SCRAPES_PER_S)
        self._readiness_interval_s = readiness_interval_s
        self._results: list[CheckResult] = []
        self._was_ready = False
        self._timer: asyncio.Task[None] | None = None
        self._max_connections = max_connections
        self._head_timeout_s = head_timeout_s
        self._listener: Listener | None = None
        self._extra_routes: dict[str, Handler] = {}
        self._post_routes: dict[str, Handler] = {}
        self._middlewares: list[Any] = []
        self._fallback: Handler | None = None
        for name, check in checks:
            self.add_check(name, check)

    @classmethod
    def from_settings(
        cls, settings: Settings, checks: Sequence[tuple[str, ReadinessCheck]] = ()
    ) -> MetricsServer:
        """Bound to ``QUANTUM_METRICS_HOST``:``QUANTUM_METRICS_PORT`` (0 picks a free port)."""
        return cls(
            settings.metrics_host, settings.metrics_port, checks=checks, access=Access.from_settings(settings)
        )

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        """Register a readiness check; the name appears in ``/readyz`` and as a metric label."""
        if name in self._checks:
            raise ValueError(f"readiness check {name!r} is already registered")
        self._checks[name] = check

    def mount(
        self,
        routes: dict[str, Handler],
        *,
        middleware: Any,
        fallback: Handler,
        post_routes: dict[str, Handler] | None = None,
    ) -> None:
        """Serve more GET routes (the read API) and POST routes (the control API) behind
        ``middleware``; ``fallback`` answers the rest of their prefix. Before :meth:`start`."""
        self._extra_routes.update(routes)
        self._post_routes.update(post_routes or {})
        self._middlewares.append(middleware)
        self._fallback = fallback

    def mark_stopping(self) -> None:
        """From now on ``/readyz`` fails with ``stopping``: the instance takes no new work."""
        self._stopping = True
        metrics.READY.set(0)

    @property
    def port(self) -> int:
        """The bound TCP port (the ephemeral one when started with port 0)."""
        if self._listener is None:
            raise RuntimeError("MetricsServer is not started")
        return self._listener.port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self._host in _WILDCARD_HOSTS else self._host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve; raises ``OSError`` when the address is taken."""
        if self._listener is not None:
            return
        app = web.Application(middlewares=self._middlewares)
        for path, handler in self._extra_routes.items():
            app.router.add_get(path, handler)
        for path, handler in self._post_routes.items():
            app.router.add_post(path, handler)
        if self._fallback is not None:
            app.router.add_route("*", "/api/{tail:.*}", self._fallback)
            app.router.add_route("*", "/api", self._fallback)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        await self.evaluate()
        listener = Listener(
            app,
            self._host,
            self._requested_port,
            max_connections=self._max_connections,
            head_timeout_s=self._head_timeout_s,
        )
        await listener.start()
        self._listener = listener
        self._timer = asyncio.create_task(self._evaluate_every(), name="readiness")
        log.info("health.listening", host=self._host, port=listener.port)

    async def stop(self) -> None:
        """Stop serving; safe to call twice."""
        timer, self._timer = self._timer, None
        await cancel_task(timer)
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.stop()

    async def _evaluate_every(self) -> None:
        while True:
            await asyncio.sleep(self._readiness_interval_s)
            try:
                await self.evaluate()
            except Exception:  # a check's own failures are caught in _run_check: this is a bug
                metrics.TASK_FAILURES.labels(task="readiness").inc()
                log.exception("health.evaluation_failed")

    async def evaluate(self) -> list[CheckResult]:
        """Run every check concurrently, keep the outcome and publish it as gauges."""
        results = list(
            await asyncio.gather(
                *(_run_check(name, check, self._check_timeout_s) for name, check in self._checks.items())
            )
        )
        failing = {r.name: r.error for r in results if not r.ok}
        if failing and failing.keys() != {r.name for r in self._results if not r.ok}:
            # Not ready while starting is expected (DEBUG: /readyz says why); once ready, losing it is news.
            (log.warning if self._was_ready else log.debug)("health.not_ready", failing=failing)
        self._was_ready = self._was_ready or not failing
        self._results = results
        for result in results:
            metrics.READINESS_CHECK.labels(check=result.name).set(1 if result.ok else 0)
        metrics.READY.set(1 if all(r.ok for r in self.readiness()) else 0)
        return self.readiness()

    def readiness(self) -> list[CheckResult]:
        """The outcome of the last evaluation, with ``stopping`` once :meth:`mark_stopping` ran."""
        if self._stopping:
            return [*self._results, CheckResult("stopping", False, "the service is shutting down", 0.0)]
        return list(self._results)

    async def _metrics(self, request: web.Request) -> web.Response:
        address = request.remote or "?"
        wait_s = self._scrapes.wait_s(address)
        if wait_s:
            metrics.HTTP_REFUSED.labels(reason="scrape_rate").inc()
            return json_error(
                429,
                f"more than {SCRAPES_PER_S:g} scrapes a second from {address}: retry in {wait_s} s",
                headers={"Retry-After": str(wait_s)},
            )
        self._scrapes.take(address)
        confidential, refusal = self.access.check_scrape(request)
        if refusal is not None:
            return refusal
        body, content_type = await self._exposition.body(
            request.headers.get("Accept", ""), confidential=confidential
        )
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _healthz(self, request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        results = self.readiness()
        failing = {r.name: r.error for r in results if not r.ok}
        body = {
            "status": "ready" if not failing else "not_ready",
            "checks": {
                r.name: {"ok": r.ok, "error": r.error, "ms": round(r.duration_s * 1000, 1)} for r in results
            },
            "failing": sorted(failing),
        }
        return _json(200 if not failing else 503, body)


def _json(status: int, body: object) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def local_url(settings: Settings) -> str:
    """This host's metrics server as a client reaches it (a wildcard bind is asked on loopback)."""
    host = "127.0.0.1" if settings.metrics_host in _WILDCARD_HOSTS else settings.metrics_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.metrics_port}"


def check_url(settings: Settings) -> str:
    """Where ``quantum-exec check`` looks: ``/readyz`` on this host's metrics port."""
    return local_url(settings) + "/readyz"


async def readiness_report(settings: Settings, *, timeout_s: float = CLIENT_TIMEOUT_S) -> tuple[bool, str]:
    """(ready, the lines to print): one on success, one per failing check (or why none answers)."""
    if settings.metrics_port == 0:
        return False, "QUANTUM_METRICS_PORT=0 has no fixed port to ask: set the port the service listens on"
    url = check_url(settings)
    try:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            status, raw = response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return (
            False,
            f"not ready: nothing answers at {url} ({type(exc).__name__}); is quantum-exec serve running?",
        )
    try:
        body = orjson.loads(raw)
        checks = body["checks"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return False, f"not ready: {url} answered {status} with a body that is not /readyz's"
    if status == 200:
        return True, f"ready: {url} ({', '.join(sorted(checks))} ok)"
    failing = [
        f"not ready: {name}: {c.get('error')}" for name, c in sorted(checks.items()) if not c.get("ok")
    ]
    return False, "\n".join(failing or [f"not ready: {url} answered {status}"])


async def check(settings: Settings, *, timeout_s: float = CLIENT_TIMEOUT_S) -> bool:
    """True when the local instance answers ``/readyz`` with 200 within ``timeout_s``."""
    if settings.metrics_port == 0:
        log.warning("health.check_unavailable", reason="QUANTUM_METRICS_PORT=0 has no fixed port to ask")
        return False
    url = check_url(settings)
    try:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
            body = await response.read()
            if response.status == 200:
                return True
            log.warning(
                "health.check_failed", url=url, status=response.status, body=body.decode("utf-8", "replace")
            )
            return False
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.warning("health.check_failed", url=url, error=f"{type(exc).__name__}: {exc}")
        return False
