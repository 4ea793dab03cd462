"""The user data stream: the listenKey, the WebSocket connections that carry it and the event fan-out.

Binance USD-M "Start / Keepalive / Close User Data Stream" (POST/PUT/DELETE /fapi/v1/listenKey,
developers.binance.com/docs/derivatives/usds-margined-futures/user-data-streams/Start-User-Data-Stream):
a key is valid 60 minutes; a POST while one is active returns that same key (and extends it), so every
instance of an account shares it; PUT extends it by 60 minutes; DELETE closes the stream; an unknown or
expired key answers ``-1125`` "This listenKey does not exist.". When a key expires, its connections get
``listenKeyExpired`` and no further events ("Event: User Data Stream Expired"); here they are then
left open and silent: the event says nothing about the connection, and no later event reaches a
socket of that key (a client that renews only when the socket closes sits on a silent socket).

URLs (binance-futures.md, "User data stream"): since 2026-04-23 ``/private/ws?listenKey=<key>`` and
``/private/stream?listenKey=<key>`` (each event in a ``{"stream": <key>, "data": <event>}``
envelope); both take ``events=A/B/...``, an allow-list: an event type left out is never delivered.
python-binance 1.0.37 opens ``/private/ws/<key>`` (every event). The retired ``/ws/<key>`` opens a
socket that receives nothing, no error. A socket lives at most ``max_connection_s`` (Binance: 24 h),
then the server closes it.

Events of one account are stamped with strictly increasing ``E``; they leave in that order
unless the ``stream_reorder`` fault holds events of different types for different times (Binance
guarantees the order within one event type only).

The engine is synchronous and may run on the server's loop or, through the Python API, on another
thread: :meth:`UserStream.publish` only appends to a locked queue and wakes the pump task on the
server's loop, which writes each event to every connection of the active key in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import WSCloseCode, web

from binance_sim.errors import SimError
from binance_sim.events import listen_key_expired
from binance_sim.faults import StreamReorder

log = logging.getLogger("binance_sim")

LISTEN_KEY_LIFETIME_MS = 60 * 60 * 1000
MAX_CONNECTION_S = 24 * 60 * 60


@dataclass(slots=True)
class Connection:
    """One user-stream socket: the key it listens to, its allow-list and its framing."""

    transport: asyncio.Transport
    key: str
    events: frozenset[str] | None  # None: every event type
    envelope: bool  # /private/stream: {"stream": key, "data": event}
    opened_at: float = field(default_factory=time.monotonic)

    def wants(self, event: dict[str, Any], key: str | None) -> bool:
        return self.key == key and (self.events is None or str(event.get("e", "")) in self.events)


def unknown_key() -> SimError:
    """-1125, as Binance answers a PUT/DELETE (or a socket) for a key that is gone."""
    return SimError(-1125, "This listenKey does not exist.")


class UserStream:
    """One account's listenKey, its sockets and the ordered event queue."""

    def __init__(
        self,
        clock: Callable[[], int],
        *,
        lifetime_ms: int = LISTEN_KEY_LIFETIME_MS,
        ping_interval_s: float = 180.0,
        max_connection_s: float = MAX_CONNECTION_S,
    ) -> None:
        self.clock = clock
        self.lifetime_ms = lifetime_ms
        self.ping_interval_s = ping_interval_s
        self.max_connection_s = max_connection_s
        self.key: str | None = None
        self.expires_at = 0
        self.delay_ms = 0
        self.reorder: StreamReorder | None = None
        # Each socket that receives events, with where and what it is written.
        self.connections: dict[web.WebSocketResponse, Connection] = {}
        # Sockets that receive nothing (the retired /ws/<key>), held open until the client leaves.
        self.silent: set[web.WebSocketResponse] = set()
        self.sent = 0
        self._lock = threading.Lock()
        # (due at, sequence, event): events leave when due, in publication order when due together.
        self._queue: list[tuple[float, int, tuple[str | None, dict[str, Any]]]] = []
        self._sequence = itertools.count()
        self._last_e = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # ----- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the pump and the expiry watch on the running loop."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._pump(), name="binance-sim-user-stream"),
            asyncio.create_task(self._watch_expiry(), name="binance-sim-listen-key-expiry"),
        ]

    async def stop(self) -> None:
        """Stop the tasks and close every socket."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.drop_connections()
        self._loop = None

    @property
    def active(self) -> bool:
        """True when some socket listens (events are only built then)."""
        return bool(self.connections)

    # ----- listen keys ------------------------------------------------------------------------------

    def _valid(self, now: int) -> bool:
        return self.key is not None and now < self.expires_at

    def create(self) -> str:
        """POST: the active key (extended) or a new one."""
        now = self.clock()
        key = self.key
        if key is None or not self._valid(now):
            if key is not None:
                self._expire()
            key = self.key = secrets.token_urlsafe(48).replace("-", "a").replace("_", "b")[:64]
        self.expires_at = now + self.lifetime_ms
        return key

    def check(self, key: str | None) -> str:
        """The key if it is the active one, else -1125."""
        if not key or key != self.key or not self._valid(self.clock()):
            raise unknown_key()
        return key

    def keepalive(self, key: str | None) -> str:
        """PUT: extend the key by its lifetime."""
        self.check(key)
        self.expires_at = self.clock() + self.lifetime_ms
        assert self.key is not None
        return self.key

    def close(self, key: str | None) -> None:
        """DELETE: invalidate the key and close its sockets (no listenKeyExpired: it did not expire)."""
        self.check(key)
        self.key = None
        self._schedule(self.drop_connections())

    def expire_now(self) -> None:
        """Expire the active key now (fault): listenKeyExpired to its sockets, then they close."""
        if self.key is not None:
            self._expire()

    def _expire(self) -> None:
        key, self.key = self.key, None
        if key is None:
            return
        log.info("sim.listen_key_expired")
        # The event goes to the key's sockets, which then stay open and hear nothing more.
        with self._lock:
            self._push(key, listen_key_expired(key, self.clock()))
        self._notify()

    async def _watch_expiry(self) -> None:
        while True:
            now = self.clock()
            if self.key is not None and now >= self.expires_at:
                self._expire()
                continue
            await self._close_old_sockets()
            wait_ms = self.expires_at - now if self.key is not None else 1000
            await asyncio.sleep(min(max(wait_ms, 1), 1000) / 1000)

    async def _close_old_sockets(self) -> None:
        """A socket lives at most ``max_connection_s`` (Binance: 24 h); then the server closes it."""
        cutoff = time.monotonic() - self.max_connection_s
        old = [ws for ws, conn in self.connections.items() if conn.opened_at <= cutoff]
        for ws in old:
            self.connections.pop(ws, None)
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"connection lifetime reached")

    # ----- events ------------------------------------------------------------------------------------

    def publish(self, event: dict[str, Any]) -> None:
        """Queue an event of the active key (thread-safe); ``E`` strictly increases for the account."""
        with self._lock:
            now = event["E"]
            event["E"] = self._last_e = max(now, self._last_e + 1)
            self._push(self.key, event)
        self._notify()

    def _push(self, key: str | None, event: dict[str, Any]) -> None:
        """Queue ``event`` of ``key`` for when it is due (the caller holds the lock)."""
        now = time.monotonic() + self.delay_ms / 1000  # fault: every event leaves delay_ms late
        due = self.reorder.due(str(event.get("e", "")), now) if self.reorder is not None else now
        heapq.heappush(self._queue, (due, next(self._sequence), (key, event)))

    def _notify(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        if threading.get_ident() == self._thread:
            wake.set()
        else:
            loop.call_soon_threadsafe(wake.set)

    def _schedule(self, coro: Any) -> None:
        loop = self._loop
        if loop is None:
            coro.close()
            return
        if threading.get_ident() == self._thread:
            self._tasks.append(loop.create_task(coro))
        else:
            asyncio.run_coroutine_threadsafe(coro, loop)

    async def _pump(self) -> None:
        """Write queued events in order: each batch is serialized and framed once per kind of socket
        (allow-list and framing) and written to each socket with one transport write (server frames
        are unmasked, so the bytes are the same for all), which keeps 20 sockets from slowing the
        order path down."""
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while True:
                batch: list[tuple[str | None, dict[str, Any]]] = []
                wait_s = 0.0
                with self._lock:
                    while self._queue:
                        due, _, item = self._queue[0]
                        wait_s = due - time.monotonic()
                        if wait_s > 0:
                            break
                        heapq.heappop(self._queue)
                        batch.append(item)
                    pending = bool(self._queue)
                try:
                    if batch:
                        self._write(batch)
                except Exception:
                    log.exception("sim.user_stream_send_failed")
                if not pending:
                    break
                if wait_s > 0 and not batch:
                    # Until the head is due or a newer event arrives: one due sooner (another type,
                    # not held by the reorder fault) must not wait behind a held one.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait_s)
                    self._wake.clear()

    def _write(self, batch: list[tuple[str | None, dict[str, Any]]]) -> None:
        if not self.connections:
            return
        framed: dict[tuple[str, frozenset[str] | None, bool], bytes] = {}
        for ws, conn in list(self.connections.items()):
            if ws.closed or conn.transport.is_closing():
                self.connections.pop(ws, None)
                continue
            kind = (conn.key, conn.events, conn.envelope)
            data = framed.get(kind)
            if data is None:
                data = framed[kind] = b"".join(
                    _text_frame(orjson.dumps({"stream": key, "data": event} if conn.envelope else event))
                    for key, event in batch
                    if conn.wants(event, key)
                )
            if data:
                conn.transport.write(data)
        self.sent += len(batch)

    # ----- sockets -------------------------------------------------------------------------------------

    def drop_soon(self) -> None:
        """Close every socket (fault ``drop_user_streams``); thread-safe, takes effect on the loop."""
        self._schedule(self.drop_connections())

    async def drop_connections(self) -> None:
        """Close every socket (fault ``drop_user_streams``, DELETE of the key)."""
        conns, self.connections = self.connections, {}
        silent, self.silent = self.silent, set()
        for ws in [*conns, *silent]:
            with contextlib.suppress(Exception):
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"closed")

    async def serve(
        self,
        request: web.Request,
        key: str | None,
        *,
        events: frozenset[str] | None = None,
        envelope: bool = False,
        retired: bool = False,
    ) -> web.StreamResponse:
        """Upgrade to a WebSocket carrying the events of ``key`` (400 -1125 when it is unknown):
        only the types in ``events`` when given, each in a ``{"stream", "data"}`` envelope when
        ``envelope``, none at all on the ``retired`` URL."""
        if not retired:
            try:
                self.check(key)
            except SimError as exc:
                return web.json_response({"code": exc.code, "msg": exc.msg}, status=400)
        # No permessage-deflate: compressing every event for every socket costs more CPU than it saves.
        ws = web.WebSocketResponse(heartbeat=self.ping_interval_s, autoping=True, compress=False)
        await ws.prepare(request)
        transport = request.transport
        if transport is None:  # the client went away during the handshake
            return ws
        if retired or key is None:
            self.silent.add(ws)
        else:
            self.connections[ws] = Connection(transport, key, events, envelope)
        try:
            async for _ in ws:
                pass  # Binance ignores what a user-data client sends
        finally:
            self.connections.pop(ws, None)
            self.silent.discard(ws)
        return ws


def _text_frame(payload: bytes) -> bytes:
    """One unmasked, final WebSocket text frame (RFC 6455 5.2) carrying ``payload``."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 1 << 16:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload
