"""The notifier: followed streams -> outbox (exactly once) -> each channel (paced, retried).

Why a sidecar and not a task in the service: a chat API that is slow, down or rate-limiting
must never take an event-loop slot, a connection or a log line's worth of attention from the
order path, and a notifier crash must not be a service crash. Everything it needs is already in
Redis (results, position events, the ledger's closed trades, dead letters, risk events); the
one thing that is not, whether the user data stream is up, it reads from the service's
``/metrics`` (``quantum_exec_user_stream_connected``), as Prometheus does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import aiohttp
from redis.asyncio import Redis

from quantum_exec.core.aio import cancel_task
from quantum_exec.core.backoff import Backoff
from quantum_exec.core.settings import Settings
from quantum_exec.ledger.trades import Trade
from quantum_exec.notify.config import NotifyConfig
from quantum_exec.notify.delivery import Courier
from quantum_exec.notify.feeds import feeds, render
from quantum_exec.notify.outbox import LEASE_TTL_MS, Outbox, sleep_or
from quantum_exec.notify.render import Notice, summary_notice, trade_from_entry, user_stream_notice
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

READ_BLOCK_MS: Final = 500
READ_COUNT: Final = 200
USER_STREAM_POLL_S: Final = 5.0
SUMMARY_POLL_S: Final = 30.0
_LOOP_RETRY: Final = Backoff(base_s=0.5, cap_s=10.0, jitter=0.2)

ReadConnected = Callable[[], Awaitable[bool | None]]


def _now() -> datetime:
    return datetime.now(UTC)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NoticeSidecar:
    """Runs the lease, the collector, the couriers, the user-stream watch and the daily summary."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        config: NotifyConfig,
        *,
        read_connected: ReadConnected | None = None,
        clock: Callable[[], datetime] = _now,
        user_stream_poll_s: float = USER_STREAM_POLL_S,
    ) -> None:
        self._redis = redis
        self._config = config
        self.outbox = Outbox(redis, settings.key_prefix)
        self._trades_stream = f"{settings.key_prefix}:ledger:trades"
        self._feeds = {
            f.stream: f
            for f in feeds(
                result=settings.result_stream,
                position=settings.position_stream,
                trades=self._trades_stream,
                dead_letter=settings.dlq_stream,
                risk=settings.risk_stream,
            )
        }
        self._read_connected = read_connected
        self._clock = clock
        self._user_stream_poll_s = user_stream_poll_s
        self._leader = False
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self.couriers: list[Courier] = []

    @property
    def leader(self) -> bool:
        return self._leader

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self.couriers = [
            Courier(
                channel,
                self.outbox,
                self._session,
                min_interval_s=self._config.min_interval_s,
                is_leader=lambda: self._leader,
            )
            for channel in self._config.channels
        ]
        for courier in self.couriers:
            await courier.prepare()
        jobs: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "lease": self._keep_lease,
            "collect": self._collect,
            **{f"deliver-{c.channel.name}": (lambda c=c: c.run(self._stop)) for c in self.couriers},  # type: ignore[misc]
        }
        if self._read_connected is not None:
            jobs["user-stream"] = self._watch_user_stream
        if self._config.summary_hour is not None:
            jobs["summary"] = self._daily_summary
        self._tasks = [
            asyncio.create_task(self._forever(name, job), name=f"notify-{name}") for name, job in jobs.items()
        ]
        log.info(
            "notify.started", channels=[c.name for c in self._config.channels], streams=sorted(self._feeds)
        )

    async def stop(self) -> None:
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                await cancel_task(task)
        with contextlib.suppress(Exception):
            await self.outbox.release_lease()
        if self._session is not None:
            await self._session.close()

    async def _forever(self, name: str, job: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a loop until stopped; a failure (Redis down, a bug) is logged and the loop restarted."""
        failures = 0
        while not self._stop.is_set():
            try:
                await job()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                wait = _LOOP_RETRY.delay(failures)
                failures += 1
                log.error(
                    "notify.loop_failed", loop=name, error=type(exc).__name__, retry_in_s=round(wait, 2)
                )
                await sleep_or(self._stop, wait)

    async def _keep_lease(self) -> None:
        while not self._stop.is_set():
            try:
                held = await self.outbox.hold_lease()
            except Exception:
                self._leader = False
                raise
            if held != self._leader:
                log.info("notify.lease", held=held)
            self._leader = held
            await sleep_or(self._stop, LEASE_TTL_MS / 1000 / 3)

    async def add(self, notices: list[Notice], cursors: dict[str, str] | None = None) -> int:
        """Put notices (and cursor moves) in the outbox, once; -1 when the lease is not ours."""
        return await self.outbox.append(cursors or {}, notices)

    async def _collect(self) -> None:
        cursors: dict[str, str] | None = None
        while not self._stop.is_set():
            if not self._leader:
                cursors = None  # another instance may move them meanwhile: read them again
                await sleep_or(self._stop, 0.2)
                continue
            if cursors is None:
                cursors = await self.outbox.start_cursors(self._feeds)
            found: Any = await self._redis.xread(
                {s: cursors[s] for s in self._feeds}, count=READ_COUNT, block=READ_BLOCK_MS
            )
            if not found:
                continue
            notices: list[Notice] = []
            moved: dict[str, str] = {}
            for stream, rows in found:
                feed = self._feeds[_s(stream)]
                for sid, fields in rows:
                    notice = render(feed, _s(sid), fields)
                    if notice is not None:
                        notices.append(notice)
                    moved[feed.stream] = _s(sid)
            if await self.add(notices, moved) < 0:
                cursors = None
                continue
            cursors.update(moved)

    async def _watch_user_stream(self) -> None:
        assert self._read_connected is not None
        down_since: datetime | None = None
        told = False
        while not self._stop.is_set():
            if not self._leader:
                await sleep_or(self._stop, 0.2)
                continue
            connected = await self._read_connected()
            now = self._clock()
            if connected is False:
                down_since = down_since or now
                if not told and now - down_since >= timedelta(seconds=self._config.user_stream_down_s):
                    told = await self.add([user_stream_notice(down_since, now, back=False)]) >= 0
            elif connected is True:
                if told and down_since is not None:
                    await self.add([user_stream_notice(down_since, now, back=True)])
                down_since, told = None, False
            await sleep_or(self._stop, self._user_stream_poll_s)

    async def _daily_summary(self) -> None:
        hour = self._config.summary_hour
        done: str | None = None
        while not self._stop.is_set():
            if not self._leader:
                await sleep_or(self._stop, 0.2)
                continue
            now = self._clock()
            day = now.date().isoformat()
            if now.hour == hour and done != day:
                until = now.replace(minute=0, second=0, microsecond=0)
                trades = await self._closed_since(until - timedelta(days=1))
                if await self.add([summary_notice(until, trades)]) >= 0:
                    done = day
            await sleep_or(self._stop, SUMMARY_POLL_S)

    async def _closed_since(self, since: datetime) -> list[Trade]:
        """The ledger's trades closed since ``since`` (the newest record of each)."""
        rows: Any = await self._redis.xrange(self._trades_stream, min=f"{int(since.timestamp() * 1000)}-0")
        newest: dict[str, Trade] = {}
        for _sid, fields in rows:
            trade = trade_from_entry(fields)
            if trade is not None and trade.closed_at is not None and trade.closed_at >= since:
                newest[trade.trade_id] = trade
        return list(newest.values())


def metrics_reader(url: str) -> ReadConnected:
    """Reads ``quantum_exec_user_stream_connected`` from the service's ``/metrics`` (a public
    series: no credentials are sent); None when the service does not answer or does not follow
    the user stream."""

    async def read() -> bool | None:
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url + "/metrics") as response,
            ):
                if response.status != 200:
                    return None
                text = await response.text()
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None
        for line in text.splitlines():
            if line.startswith("quantum_exec_user_stream_connected "):
                return float(line.split()[1]) >= 1
        return None

    return read
