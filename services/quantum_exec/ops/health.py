"""The operations HTTP server (``/metrics``, ``/healthz``, ``/readyz``) and the ``check`` command.

``/healthz`` answers 200 while the process serves HTTP at all. ``/readyz`` runs every registered
readiness check concurrently, each under a short timeout, and answers 200 only when all pass,
otherwise 503 with a JSON body naming the failing checks. The same evaluation runs before each
``/metrics`` scrape so that ``quantum_exec_ready`` and ``quantum_exec_readiness_check_ok`` are
always as fresh as the scrape itself, without a free-running timer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger, redact
from quantum_exec.settings import Settings

log = get_logger(__name__)

ReadinessCheck = Callable[[], Awaitable[bool | None]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""An async callable: returns ``None``/``True`` when ready; ``False`` or an exception means not ready."""

CHECK_TIMEOUT_S = 2.0
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
    if outcome is False:
        return CheckResult(name, False, "check returned false", time.monotonic() - start)
    return CheckResult(name, True, None, time.monotonic() - start)


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
    ) -> None:
        self._host = host
        self._requested_port = port
        self._registry = registry
        self._check_timeout_s = check_timeout_s
        self._checks: dict[str, ReadinessCheck] = {}
        self._stopping = False
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._extra_routes: dict[str, Handler] = {}
        self._middlewares: list[Any] = []
        self._fallback: Handler | None = None
        for name, check in checks:
            self.add_check(name, check)

    @classmethod
    def from_settings(
        cls, settings: Settings, checks: Sequence[tuple[str, ReadinessCheck]] = ()
    ) -> MetricsServer:
        """Bound to ``QUANTUM_METRICS_HOST``:``QUANTUM_METRICS_PORT`` (0 picks a free port)."""
        return cls(settings.metrics_host, settings.metrics_port, checks=checks)

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        """Register a readiness check; the name appears in ``/readyz`` and as a metric label."""
        if name in self._checks:
            raise ValueError(f"readiness check {name!r} is already registered")
        self._checks[name] = check

    def mount(self, routes: dict[str, Handler], *, middleware: Any, fallback: Handler) -> None:
        """Serve more GET routes (the read API) behind ``middleware``; ``fallback`` answers the rest
        of their prefix. Before :meth:`start`."""
        self._extra_routes.update(routes)
        self._middlewares.append(middleware)
        self._fallback = fallback

    def mark_stopping(self) -> None:
        """From now on ``/readyz`` fails with ``stopping``: the instance takes no new work."""
        self._stopping = True

    @property
    def port(self) -> int:
        """The bound TCP port (the ephemeral one when started with port 0)."""
        if self._port is None:
            raise RuntimeError("MetricsServer is not started")
        return self._port

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self._host in _WILDCARD_HOSTS else self._host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve; raises ``OSError`` when the address is taken."""
        if self._runner is not None:
            return
        app = web.Application(middlewares=self._middlewares)
        for path, handler in self._extra_routes.items():
            app.router.add_get(path, handler)
        if self._fallback is not None:
            app.router.add_route("*", "/api/{tail:.*}", self._fallback)
            app.router.add_route("*", "/api", self._fallback)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._requested_port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or ()
        self._port = int(sockets[0].getsockname()[1]) if sockets else self._requested_port
        log.info("health.listening", host=self._host, port=self._port)

    async def stop(self) -> None:
        """Stop serving; safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def evaluate(self) -> list[CheckResult]:
        """Run every check concurrently and publish the outcome as gauges."""
        results = list(
            await asyncio.gather(
                *(_run_check(name, check, self._check_timeout_s) for name, check in self._checks.items())
            )
        )
        if self._stopping:
            results.append(CheckResult("stopping", False, "the service is shutting down", 0.0))
        for result in results:
            if result.name in self._checks:
                metrics.READINESS_CHECK.labels(check=result.name).set(1 if result.ok else 0)
        metrics.READY.set(1 if all(r.ok for r in results) else 0)
        return results

    async def _metrics(self, request: web.Request) -> web.Response:
        await self.evaluate()
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(self._registry), headers={"Content-Type": content_type})

    async def _healthz(self, request: web.Request) -> web.Response:
        return _json(200, {"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        results = await self.evaluate()
        failing = {r.name: r.error for r in results if not r.ok}
        body = {
            "status": "ready" if not failing else "not_ready",
            "checks": {
                r.name: {"ok": r.ok, "error": r.error, "ms": round(r.duration_s * 1000, 1)} for r in results
            },
            "failing": sorted(failing),
        }
        if failing:
            log.warning("health.not_ready", failing=failing)
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
