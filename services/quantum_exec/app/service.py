"""Wiring: settings -> Redis (or a private embedded one) + executor + consumer + operations.

``Service(settings)`` builds everything in :meth:`start`; :meth:`stop` undoes it in reverse and is
safe to call twice; :meth:`run_until_signal` is what ``quantum-exec serve`` runs: SIGTERM/SIGINT
only set an event, then the consumer drains within ``shutdown_grace_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from quantum_exec import __version__
from quantum_exec.app.embedded import EmbeddedRedis
from quantum_exec.app.service_health import ServiceHealth
from quantum_exec.contracts import ExecutionResult, TradeIntent
from quantum_exec.core.config_checks import db_out_of_range
from quantum_exec.core.errors import ConfigError, QuantumError, RetryableError, UnknownOutcomeError
from quantum_exec.core.redis_client import connect, location
from quantum_exec.core.settings import Settings
from quantum_exec.execution.run import Attempt
from quantum_exec.ops import metrics
from quantum_exec.ops.health import MetricsServer
from quantum_exec.ops.logs import get_logger
from quantum_exec.ops.notify import Notifier
from quantum_exec.stream.consumer import IntentConsumer
from quantum_exec.stream.link import REDIS_DOWN, RedisLink
from quantum_exec.stream.runner import Handler

if TYPE_CHECKING:
    from binance_sim import Simulator
    from quantum_exec.account.follower import AccountFollower
    from quantum_exec.app.api import ReadApi
    from quantum_exec.execution.executor import Executor
    from quantum_exec.ledger.book import LedgerBook
    from quantum_exec.risk.control import ControlApi
    from quantum_exec.risk.governor import Governor
    from quantum_exec.stream.shared_pacing import SharedPacing

log = get_logger(__name__)

Hook = Callable[[], None]
# While Redis is unreachable at start, each retry asks systemd for this much more start time
# (EXTEND_TIMEOUT_USEC), so an outage longer than TimeoutStartSec neither fails the start nor
# burns the unit's start limit in restart loops.
_START_EXTENSION_S = 30.0
# Each of the ledger and the account follower gets this long to stop.
_PART_STOP_S = 5.0


class Service:
    """One service instance. ``handler`` replaces the executor (tests, tools).

    ``on_ready`` runs once the consumer is started, ``on_progress`` whenever the consumer loop
    made progress (the watchdog is fed from here, never from a timer), ``on_stopping`` when the
    drain begins. With ``operations`` the metrics/health server and sd_notify are run as well.
    """

    def __init__(
        self,
        settings: Settings,
        handler: Handler | None = None,
        *,
        on_ready: Hook | None = None,
        on_progress: Hook | None = None,
        on_stopping: Hook | None = None,
        operations: bool = True,
    ) -> None:
        self.settings = settings
        self._handler = handler
        self._on_ready = on_ready
        self._on_progress = on_progress
        self._on_stopping = on_stopping
        self._operations = operations
        self.embedded_redis: EmbeddedRedis | None = None
        self._redis: Redis | None = None
        self.redis_url: str | None = settings.redis_url
        self.executor: Executor | None = None
        # The live account (user data stream), when following it is on.
        self.account: AccountFollower | None = None
        # The trade ledger built from the position events (with the account follower).
        self.book: LedgerBook | None = None
        # The in-process simulator of the embedded default (None against a real exchange).
        self.simulator: Simulator | None = None
        self.consumer: IntentConsumer | None = None
        # The pacing budget shared with the account's other instances (with the real executor).
        self.shared_pacing: SharedPacing | None = None
        # The account's risk governor (with the real executor): states, limits, the flatten.
        self.governor: Governor | None = None
        self.metrics_server: MetricsServer | None = None
        self.notifier: Notifier | None = None
        self._api: ReadApi | None = None
        self._control: ControlApi | None = None
        self.redis_answered = False
        self.health = ServiceHealth(self)
        self._stop_task: asyncio.Task[bool] | None = None

    @property
    def redis(self) -> Redis:
        """The Redis client (after :meth:`start`)."""
        if self._redis is None:
            raise RuntimeError("service not started")
        return self._redis

    @property
    def metrics_port(self) -> int | None:
        """The bound metrics port, when the operations server runs."""
        return self.metrics_server.port if self.metrics_server is not None else None

    @property
    def exchange_url(self) -> str | None:
        """The exchange REST root the executor talks to (None with an injected handler)."""
        return self.executor.gateway.base_url if self.executor is not None else None

    async def start(self) -> None:
        """Connect (or start the embedded Redis), build the executor and start consuming."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        settings = self.settings
        if self._operations:
            # First: a busy port is refused before anything starts, and /healthz and /readyz
            # answer (not ready, saying why) while Redis or the exchange are still awaited.
            await self._start_operations()
        if settings.embedded_redis:
            state = settings.state_dir / "redis" if settings.state_dir is not None else None
            self.embedded_redis = EmbeddedRedis(state_dir=state)
            # Started from the loop's own thread, not a worker thread: the server's death signal
            # is tied to the thread that forked it (PR_SET_PDEATHSIG), and the loop thread lives
            # as long as the service does.
            self.embedded_redis.start()
            self.redis_url = self.embedded_redis.url
        self._redis = connect(settings, self.redis_url)
        await self._wait_for_redis(self._redis)
        self.redis_answered = True
        handler = self._handler or await self._executor_handler()
        on_close = on_close_held = None
        # One view of the connection for every Redis call on the order path.
        link = RedisLink(settings.redis_reconnect_max_s)
        if self.executor is not None:
            from quantum_exec.exchange.gateway import BinanceGateway
            from quantum_exec.stream.shared_pacing import SharedPacing
            from quantum_exec.stream.signals import CloseSignals, RedisPlans
            from quantum_exec.stream.store import Keys

            closes = CloseSignals(self._redis, settings, link)
            self.executor.plans = RedisPlans(self._redis, settings, link)
            self.executor.closes = closes
            on_close, on_close_held = closes.announce, closes.publish
            gateway = self.executor.gateway
            if settings.shared_pacing and isinstance(gateway, BinanceGateway) and gateway.limiter.enabled:
                self.shared_pacing = SharedPacing(
                    self._redis, Keys(settings), settings.consumer_name, gateway.limiter
                )
                await self.shared_pacing.start()
            from quantum_exec.risk.governor import start_governor

            self.governor = await start_governor(
                self._redis, settings, self.executor, self.account, self.book
            )
        self.consumer = IntentConsumer(
            self._redis,
            settings,
            handler,
            on_progress=self._progress,
            on_close=on_close,
            on_close_held=on_close_held,
            link=link,
            survey=self.executor.survey if self.executor is not None else None,
        )
        if self._api is not None:
            self._attach_api()
        await self.consumer.start()
        if self.metrics_server is not None:
            # Readiness runs on a timer: evaluated now, /readyz says ready when READY=1 goes out.
            await self.metrics_server.evaluate()
        if self.notifier is not None:
            self.notifier.ready(f"consuming {settings.intent_stream} as {settings.consumer_name}")
        if self._on_ready is not None:
            self._on_ready()
        log.info("service.started", consumer=settings.consumer_name, embedded_redis=settings.embedded_redis)

    async def _start_operations(self) -> None:
        settings = self.settings
        self.notifier = Notifier.from_env(watchdog=settings.watchdog)
        metrics.set_build_info(__version__)
        server = self.metrics_server = MetricsServer.from_settings(
            settings,
            checks=self.health.checks(),
        )
        if self._handler is None:  # the real executor: the exchange, and the read API over it
            server.add_check("exchange_rules", self.health.rules_ready)
            server.add_check("exchange", self.health.exchange_ready)
            from quantum_exec.app.api import ReadApi

            self._api = ReadApi(
                settings,
                book=None,
                account=None,
                gateway=None,
                status=self.health.status,
                access=server.access,
                starting=self.health.starting_reason,
            )
            from quantum_exec.risk.control import ControlApi

            self._control = ControlApi(settings, server.access, None)  # the governor comes later
            server.mount(
                {**self._api.routes(), **self._control.routes()},
                middleware=self._api.guard,
                fallback=self._api.not_found,
                post_routes=self._control.post_routes(),
            )
        try:
            await server.start()
        except OSError as exc:
            raise ConfigError(
                f"QUANTUM_METRICS_PORT={settings.metrics_port}: cannot listen on "
                f"{settings.metrics_host}:{settings.metrics_port} ({exc.strerror or exc}); "
                "another process holds the port: stop it or choose another port (0 = any free one)"
            ) from None
        if self._api is not None:
            log.info("console.listening", url=f"{server.url}/")

    async def _wait_for_redis(self, redis: Redis) -> None:
        """Retry until Redis answers: an outage at start delays READY instead of failing the unit."""
        delay_s = 0.1
        attempts = 0
        while True:
            try:
                await redis.ping()
            except (ResponseError, *REDIS_DOWN) as exc:
                # Refused at SELECT (a ResponseError over TCP, a ConnectionError over a socket).
                if "DB index is out of range" in str(exc):
                    raise ConfigError(db_out_of_range(self.redis_url or "")) from None
                if not isinstance(exc, REDIS_DOWN):
                    raise
                attempts += 1
                where = location(self.settings, self.redis_url)
                if attempts == 1 or attempts % 10 == 0:
                    log.warning("redis.unreachable_at_start", url=where, error=str(exc), attempts=attempts)
                if self.notifier is not None:
                    extend_usec = int((delay_s + _START_EXTENSION_S) * 1_000_000)
                    self.notifier.notify(
                        f"EXTEND_TIMEOUT_USEC={extend_usec}\nSTATUS=waiting for Redis at {where}"
                    )
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, self.settings.redis_reconnect_max_s)
                continue
            if attempts:
                log.info("redis.reachable", attempts=attempts)
            return

    async def _executor_handler(self) -> Handler:
        # Imported when used: the exchange stack (python-binance) is not needed with a handler.
        from quantum_exec.app.embedded import start_simulator, with_sim_credentials
        from quantum_exec.execution.executor import create_executor

        settings = self.settings
        if settings.embedded_sim:
            self.simulator, settings = await start_simulator(settings)
        else:
            settings = with_sim_credentials(settings)  # a standalone `quantum-exec sim`
        try:
            executor = self.executor = await create_executor(settings)
        except (RetryableError, UnknownOutcomeError) as exc:
            from quantum_exec.exchange.endpoints import rest_root

            variable = "QUANTUM_BINANCE_BASE_URL" if settings.binance_base_url else "QUANTUM_EXCHANGE"
            raise QuantumError(
                f"the exchange at {rest_root(settings)} is not reachable ({exc}); check {variable}"
            ) from None
        if settings.user_stream:
            await self._follow_account(executor, settings)

        async def execute(
            intent: TradeIntent, stream_id: str, received_at: datetime, *, attempt: Attempt
        ) -> ExecutionResult:
            return await executor.execute(
                intent, stream_id=stream_id, received_at=received_at, attempt=attempt
            )

        return execute

    async def _follow_account(self, executor: Executor, settings: Settings) -> None:
        """Start the account follower; intents wait for its first resync and reconciliation."""
        from quantum_exec.account.follower import AccountFollower
        from quantum_exec.account.store import AccountStore
        from quantum_exec.exchange.gateway import BinanceGateway

        assert isinstance(executor.gateway, BinanceGateway)
        account = self.account = AccountFollower(
            settings, executor.gateway, AccountStore(self.redis, settings), legs=executor.legs
        )
        await account.start()
        executor.account = account
        from quantum_exec.ledger.book import LedgerBook

        self.book = LedgerBook(
            self.redis,
            settings,
            account.store,
            is_leader=lambda: account.leader,
            funding_seen_ms=lambda: account.funding_seen_ms,
            funding=executor.gateway.funding_since,
        )
        await self.book.start()
        timeout_s = settings.user_stream_start_timeout_s
        if not await account.wait_synced(timeout_s):
            log.warning(
                "account.not_synced_at_start",
                timeout_s=timeout_s,
                detail="consuming with REST lookups until the user data stream is up",
            )

    def _attach_api(self) -> None:
        """Give the read API (mounted at start, answering 503 meanwhile) the parts it reads."""
        from quantum_exec.exchange.gateway import BinanceGateway

        assert self._api is not None
        gateway = self.executor.gateway if self.executor is not None else None
        self._api.attach(
            book=self.book,
            account=self.account,
            gateway=gateway if isinstance(gateway, BinanceGateway) else None,
            redis=self.redis,
        )
        if self._control is not None:
            self._control.attach(self.governor)

    def _progress(self) -> None:
        if self.notifier is not None:
            self.notifier.watchdog()
        if self._on_progress is not None:
            self._on_progress()

    async def stop(self) -> bool:
        """Drain and release everything; True when nothing in flight had to be cancelled. Safe twice."""
        if self._stop_task is None:
            self._stop_task = asyncio.create_task(self._stop())
        return await asyncio.shield(self._stop_task)

    async def _stop(self) -> bool:
        # Refused before anything started (a busy port): the caller's one line says it all.
        quiet = self._redis is None and (self.embedded_redis is None or not self.embedded_redis.running)
        if not quiet:
            log.info("service.stopping")
        if self._on_stopping is not None:
            self._on_stopping()
        if self.notifier is not None:
            self.notifier.stopping("draining in-flight intents")
        if self.metrics_server is not None:
            self.metrics_server.mark_stopping()
        drained = True
        if self.consumer is not None:
            await self.consumer.stop()
            drained = self.consumer.drained
        parts = (
            ("risk", self.governor),
            ("pacing", self.shared_pacing),
            ("ledger", self.book),
            ("account", self.account),
        )
        for name, part in parts:
            if part is None:
                continue
            try:
                # Bounded: a stuck socket or Redis call must not hold the drain past systemd's stop.
                await asyncio.wait_for(part.stop(), _PART_STOP_S)
            except TimeoutError:
                log.error("service.stop_slow", part=name, timeout_s=_PART_STOP_S)
            except Exception:
                log.exception("service.stop_failed", part=name)
        if self.executor is not None:
            try:
                await self.executor.close()
            except Exception:
                log.exception("service.executor_close_failed")
        if self.simulator is not None:
            await self.simulator.stop()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        if self._redis is not None:
            await self._redis.aclose()
        if self.embedded_redis is not None:
            await asyncio.to_thread(self.embedded_redis.stop)
        if self.notifier is not None:
            self.notifier.close()
        if not quiet:
            log.info("service.stopped", drained=drained)
        return drained

    def _hurry(self) -> None:
        log.warning(
            "service.stopping_now", detail="second signal: in-flight intents are resumed after a restart"
        )
        if self.consumer is not None:
            self.consumer.hurry()

    async def run_until_signal(self) -> int:
        """Run until SIGTERM or SIGINT; exit code 0 after a clean drain, 1 when work was cancelled."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            # The handler only sets the event: everything else happens in the normal flow.
            loop.add_signal_handler(sig, stop.set)
        try:
            # A signal during start-up (e.g. while Redis is still unreachable) stops it too.
            starting = asyncio.create_task(self.start())
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
            else:
                starting.result()  # start-up errors propagate
                await stopped
            stopped.cancel()
            log.info("service.signal_received")
            for sig in signals:  # a second signal: stop waiting for what is in flight
                loop.add_signal_handler(sig, self._hurry)
            return 0 if await self.stop() else 1
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
