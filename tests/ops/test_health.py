"""The operations HTTP server over real HTTP on an ephemeral port, and the ``check`` client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from quantum_exec.core.settings import Settings
from quantum_exec.ops import health, metrics
from quantum_exec.ops.health import MetricsServer
from support.waiting import wait_for


class Switch:
    """A readiness check whose outcome the test flips."""

    def __init__(self, ok: bool) -> None:
        self.ok = ok
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        if not self.ok:
            raise ConnectionError("connection refused")
        return True


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        yield client


def sample(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and (labels is None or all(s.labels.get(k) == v for k, v in labels.items())):
                return float(s.value)
    return None


async def test_endpoints_with_failing_then_passing_checks(session: aiohttp.ClientSession) -> None:
    redis_check = Switch(ok=False)

    async def rules_loaded() -> bool:
        return True

    server = MetricsServer("127.0.0.1", 0, checks=[("redis", redis_check), ("exchange_rules", rules_loaded)])
    await server.start()
    try:
        assert server.port > 0
        async with session.get(f"{server.url}/healthz") as response:
            assert response.status == 200

        async with session.get(f"{server.url}/readyz") as response:
            assert response.status == 503
            body = await response.json()
        assert body["status"] == "not_ready"
        assert body["failing"] == ["redis"]
        assert body["checks"]["redis"]["error"] == "ConnectionError: connection refused"
        assert body["checks"]["exchange_rules"]["ok"] is True

        async with session.get(f"{server.url}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            text = await response.text()
        assert sample(text, "quantum_exec_ready") == 0.0
        assert sample(text, "quantum_exec_readiness_check_ok", {"check": "redis"}) == 0.0
        assert sample(text, "quantum_exec_readiness_check_ok", {"check": "exchange_rules"}) == 1.0
        assert sample(text, "quantum_exec_process_resident_memory_bytes") is not None

        # Readiness is evaluated on a timer, not per request: the next evaluation sees the change.
        redis_check.ok = True

        async def ready() -> bool:
            async with session.get(f"{server.url}/readyz") as response:
                return response.status == 200 and (await response.json())["failing"] == []

        await wait_for(ready, 10, "/readyz to follow the passing check")
        async with session.get(f"{server.url}/metrics") as response:
            assert sample(await response.text(), "quantum_exec_ready") == 1.0

        server.mark_stopping()
        async with session.get(f"{server.url}/readyz") as response:
            assert response.status == 503
            assert (await response.json())["failing"] == ["stopping"]
    finally:
        await server.stop()
        await server.stop()  # safe twice


async def test_metrics_exposes_counters_and_openmetrics_on_request(session: aiohttp.ClientSession) -> None:
    server = MetricsServer("127.0.0.1", 0)
    await server.start()
    try:
        metrics.DEAD_LETTERS.labels(reason="test_health_probe").inc()
        async with session.get(f"{server.url}/metrics") as response:
            text = await response.text()
        assert sample(text, "quantum_exec_dead_letters_total", {"reason": "test_health_probe"}) is not None
        headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
        async with session.get(f"{server.url}/metrics", headers=headers) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            assert (await response.text()).rstrip().endswith("# EOF")
    finally:
        await server.stop()


async def test_slow_check_times_out_and_false_fails(session: aiohttp.ClientSession) -> None:
    release = asyncio.Event()

    async def hangs() -> None:
        await release.wait()

    async def says_no() -> bool:
        return False

    async def says_why() -> str:
        return "waiting for Redis at redis://h:1/0"

    server = MetricsServer(
        "127.0.0.1",
        0,
        checks=[("exchange", hangs), ("group", says_no), ("redis", says_why)],
        check_timeout_s=0.2,
    )
    await server.start()
    try:
        async with session.get(f"{server.url}/readyz") as response:
            assert response.status == 503
            body = await response.json()
        assert body["failing"] == ["exchange", "group", "redis"]
        assert body["checks"]["exchange"]["error"] == "timed out after 0.2 s"
        assert body["checks"]["group"]["error"] == "check returned false"
        assert body["checks"]["redis"]["error"] == "waiting for Redis at redis://h:1/0"  # says why
    finally:
        release.set()
        await server.stop()


async def test_scrapes_do_not_run_the_readiness_checks(session: aiohttp.ClientSession) -> None:
    """A flood of scrapes costs Redis nothing: the checks run on the timer, once a second."""
    redis_check = Switch(ok=True)
    server = MetricsServer("127.0.0.1", 0, checks=[("redis", redis_check)])
    await server.start()
    try:
        started = time.monotonic()
        for _ in range(40):
            async with session.get(f"{server.url}/readyz") as response:
                assert response.status == 200
        # /metrics too, to its per-address limit and past it (a 429 then, cheaply).
        statuses = []
        for _ in range(health.SCRAPE_BURST + 5):
            async with session.get(f"{server.url}/metrics") as response:
                statuses.append(response.status)
        elapsed = time.monotonic() - started
        assert statuses[0] == 200 and statuses[-1] == 429, statuses
    finally:
        await server.stop()
    # One evaluation at start, then at most one per second of the run.
    assert redis_check.calls <= 2 + int(elapsed), (redis_check.calls, elapsed)


async def test_a_burst_of_scrapes_encodes_the_registry_a_few_times(session: aiohttp.ClientSession) -> None:
    """Encoding the registry is the expensive part of a scrape: past a small burst, at most once a
    second; the other scrapes get the last body."""

    class Counting:
        def __init__(self) -> None:
            self.collects = 0

        def collect(self) -> list[GaugeMetricFamily]:
            self.collects += 1
            return [GaugeMetricFamily("probe", "a probe", value=self.collects)]

    probe = Counting()
    registry = CollectorRegistry()
    registry.register(probe)
    server = MetricsServer("127.0.0.1", 0, registry=registry)
    await server.start()
    try:
        started = time.monotonic()

        async def one() -> int:
            async with session.get(f"{server.url}/metrics") as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(one() for _ in range(health.SCRAPE_BURST)))
        elapsed = time.monotonic() - started
    finally:
        await server.stop()
    assert statuses == [200] * health.SCRAPE_BURST
    assert probe.collects <= health.ENCODE_BURST + 1 + int(elapsed), (probe.collects, elapsed)


async def test_duplicate_check_name_is_refused() -> None:
    async def ok() -> None:
        return None

    server = MetricsServer("127.0.0.1", 0, checks=[("redis", ok)])
    with pytest.raises(ValueError, match="redis"):
        server.add_check("redis", ok)


async def test_check_client_follows_readiness() -> None:
    redis_check = Switch(ok=True)
    server = MetricsServer("127.0.0.1", 0, checks=[("redis", redis_check)])
    await server.start()
    try:
        settings = Settings(metrics_host="127.0.0.1", metrics_port=server.port)
        assert await health.check(settings)
        redis_check.ok = False

        async def not_ready() -> bool:
            return not await health.check(settings)

        await wait_for(not_ready, 10, "check to follow the failing readiness check")
    finally:
        await server.stop()
    # Nobody listening any more: False, not an exception.
    assert not await health.check(settings, timeout_s=1.0)
    assert not await health.check(Settings(metrics_port=0))


def test_check_url_uses_loopback_for_wildcard_binds() -> None:
    assert health.check_url(Settings(metrics_port=9108)) == "http://127.0.0.1:9108/readyz"
    assert health.check_url(Settings(metrics_host="::", metrics_port=1)) == "http://127.0.0.1:1/readyz"
    assert health.check_url(Settings(metrics_host="10.0.0.5", metrics_port=1)) == "http://10.0.0.5:1/readyz"
    assert health.check_url(Settings(metrics_host="::1", metrics_port=1)) == "http://[::1]:1/readyz"
