"""The order path's Redis scripts, pipelined on one connection: every script call made in one
turn of the event loop leaves in one write, and their replies are read in order as they come.

redis-py sends each command on a connection it takes from its pool and gives back after the
reply: a lock, four observability hooks, a readiness check, a retry wrapper and a timeout context
per command, about 50 us of CPU (and one write and one read system call on each side) for a script
whose own work in Redis takes a few. Under load the service runs the scripts of dozens of intents
at once (their lead-ins, admissions, fences and commits); here they share one connection the way
Redis's protocol allows (a client may send many commands before reading; the replies come in the
order sent), each caller still awaiting its own reply: about 5-10 us per call.

What stays as it was:

* **Outcomes.** Each caller gets its own reply, or its own error reply (NOSCRIPT, a script's
  error) as redis-py raises it. When the connection fails (closed, reset, no reply within the
  client's ``socket_timeout``) every call still waiting fails with redis-py's ``ConnectionError``
  or ``TimeoutError``, as each would have on its own connection: its script may or may not have
  run (every caller already treats a lost reply so: the scripts are safe to run again). The next
  call takes a fresh connection.
* **Failover.** The connection comes from the client's own pool (``pool.get_connection``): a
  Sentinel pool connects to the master Sentinel names now. A ``READONLY`` reply (a demoted master)
  fails that call with ``ConnectionError`` and drops the connection, as redis-py's Sentinel
  connection does, so the next call asks Sentinel again.
* **Health.** A connection idle longer than the client's ``health_check_interval`` is PINGed
  (redis-py's own check) before the next write, as redis-py does before any command.
* **Shutdown.** The connection is the pool's: ``client.aclose()`` closes it with the others.

Not used for a Redis Cluster (the cluster client routes each command to its slot's node) nor for
commands redis-py post-processes or that block (XREADGROUP ... BLOCK): the scripts go here
(:func:`quantum_exec.core.scripts.run_script`), and the account's record and position-event
batches (:meth:`Lane.many`). :func:`enable` attaches a lane to a client made by
:func:`quantum_exec.core.redis_client.connect`; a client without one uses redis-py's path.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Final

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from quantum_exec.core.redis_conn import quick_pack

_ATTR: Final = "_quantum_exec_lane"
_READ_SIZE: Final = 65_536


def enable(client: Redis) -> None:
    """Send ``client``'s scripts through a lane (see the module docstring)."""
    setattr(client, _ATTR, Lane(client.connection_pool))


def lane_of(client: Any) -> Lane | None:
    return getattr(client, _ATTR, None)


def _parse_error(message: str) -> BaseException:
    return BaseParser.parse_error(message)  # type: ignore[no-untyped-call,no-any-return]


class Lane:
    """Commands of many tasks on one pooled connection, pipelined (see the module docstring)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool
        # Called, not written yet: the next flush (at the end of this loop turn) writes them.
        self._queued: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._flush_due = False
        # Written, reply not read yet, in the order written.
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._conn: AbstractConnection | None = None
        self._parser: Any = None  # hiredis.Reader of the current connection
        self._worker: asyncio.Task[None] | None = None

    def call(self, *args: Any) -> asyncio.Future[Any]:
        """Send ``args`` (a command without a redis-py response callback); its reply's future."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append((args, future))
        if not self._flush_due:
            self._flush_due = True
            loop.call_soon(self._flush)
        return future

    async def many(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``commands`` together (one write, in order); their replies, an error reply or a
        connection error as that command's item (not raised), as a pipeline's
        ``execute(raise_on_error=False)`` gives them."""
        futures = [self.call(*args) for args in commands]
        return list(await asyncio.gather(*futures, return_exceptions=True))

    def _flush(self) -> None:
        self._flush_due = False
        conn = self._conn
        if conn is None or not self._writable(conn) or self._health_due(conn):
            self._start_worker()  # it connects (or checks), then writes what is queued
            return
        self._write(conn)

    def _writable(self, conn: AbstractConnection) -> bool:
        writer = conn._writer
        return writer is not None and not writer.transport.is_closing()

    def _health_due(self, conn: AbstractConnection) -> bool:
        return (
            not self._waiting
            and bool(conn.health_check_interval)
            and asyncio.get_running_loop().time() > conn.next_health_check
        )

    def _write(self, conn: AbstractConnection) -> None:
        queued, self._queued = self._queued, []
        packed: list[bytes] = []
        for args, future in queued:
            if future.done():
                continue  # its caller was cancelled before it left: it never does
            try:
                packed.append(b"".join(quick_pack(conn, args) or conn.pack_command(*args)))
            except Exception as exc:  # redis-py refuses the arguments (DataError): this call alone
                future.set_exception(exc)
                continue
            self._waiting.append(future)
        if packed:
            writer = conn._writer
            assert writer is not None
            writer.write(b"".join(packed))
            self._start_worker()

    def _start_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="redis-lane")

    async def _work(self) -> None:
        """Connect (or check the connection) when needed, write what is queued, read the replies
        while any is awaited; a failure fails the calls written (their outcome is unknown) and
        drops the connection; calls not written yet go on a new one, unless connecting failed."""
        while self._waiting or self._queued:
            connecting = False
            try:
                conn = self._conn
                if conn is None or not self._writable(conn):
                    if self._waiting:
                        raise RedisConnectionError("Connection closed while replies were due")
                    connecting = True
                    conn = await self._connect()
                    connecting = False
                elif self._health_due(conn):
                    await conn.check_health()  # type: ignore[no-untyped-call]
                    continue
                if self._queued and not self._flush_due:
                    self._write(conn)
                if not self._waiting:
                    return  # what is still queued has its flush due: it starts a worker again
                await self._read(conn)
            except asyncio.CancelledError:
                self._fail(RedisConnectionError("Redis lane stopped"), queued=True)
                raise
            except BaseException as exc:
                self._fail(exc, queued=connecting)

    async def _connect(self) -> AbstractConnection:
        if self._conn is not None:
            await self._drop()
        conn: AbstractConnection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        encoder = conn.encoder
        options: dict[str, Any] = {"protocolError": InvalidResponse, "replyError": _parse_error}
        if encoder.decode_responses:
            options.update(encoding=encoder.encoding, errors=encoder.encoding_errors)
        self._parser = hiredis.Reader(**options)
        self._conn = conn
        return conn

    async def _read(self, conn: AbstractConnection) -> None:
        reader = conn._reader
        assert reader is not None
        try:
            async with asyncio.timeout(conn.socket_timeout):
                data = await reader.read(_READ_SIZE)
        except TimeoutError:
            raise RedisTimeoutError("Timeout reading from Redis") from None
        except OSError as exc:
            raise RedisConnectionError(f"Error while reading from Redis: {exc}") from exc
        if not data:
            raise RedisConnectionError("Connection closed by server.")
        conn.next_health_check = asyncio.get_running_loop().time() + conn.health_check_interval
        parser = self._parser
        parser.feed(data)
        waiting = self._waiting
        while waiting:
            reply = parser.gets()
            if reply is False:
                return
            future = waiting.popleft()
            if isinstance(reply, ReadOnlyError | RedisConnectionError):
                # A demoted master (READONLY), one loading a sync (LOADING), a connection that
                # lost its authentication: this call and the connection fail, as redis-py's
                # connections make them, so the next connection asks again (Sentinel too).
                failure = (
                    RedisConnectionError("The previous master is now a replica")
                    if isinstance(reply, ReadOnlyError)
                    else reply
                )
                if not future.done():
                    future.set_exception(failure)
                raise failure
            if future.done():
                continue  # its caller was cancelled: the reply is read and dropped
            if isinstance(reply, BaseException):
                future.set_exception(reply)  # an error reply is never a result
            else:
                future.set_result(reply)
        if parser.gets() is not False:
            raise InvalidResponse("Redis sent a reply nobody asked for")

    def _fail(self, exc: BaseException, *, queued: bool) -> None:
        """The calls written (and with ``queued`` those not written yet) fail with ``exc`` as a
        connection error; the connection is dropped."""
        if not isinstance(exc, RedisConnectionError | RedisTimeoutError):
            exc = RedisConnectionError(f"Redis lane failed: {exc!r}")
        waiting = list(self._waiting)
        self._waiting.clear()
        if queued:
            waiting += [future for _, future in self._queued]
            self._queued.clear()
        for future in waiting:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: a cancelled caller leaves no "never retrieved" log
        conn, self._conn = self._conn, None
        if conn is not None:
            task = asyncio.get_running_loop().create_task(self._release(conn))
            _RELEASING.add(task)
            task.add_done_callback(_RELEASING.discard)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._release(conn)

    async def _release(self, conn: AbstractConnection) -> None:
        """A connection the lane gives up: never trusted again (a reply may be half read)."""
        await conn.disconnect(nowait=True)
        await self._pool.release(conn)


_RELEASING: set[asyncio.Task[None]] = set()
