"""redis-py's asyncio connections with a cheaper write: no timer task for a write the socket takes.

With a ``socket_timeout`` set, redis-py 8 sends every command inside ``asyncio.wait_for``: a new
task, a timer and two context switches per command (about 5 % of the service's CPU in the
throughput bench), though the kernel takes almost every command whole at once. Here the command is
handed to the transport; only when bytes are left in its buffer (the socket is full) or it is
closing is the drain awaited, under the same timeout. Everything else is redis-py's: the connect,
the health check (inlined: a clock comparison, a PING only when the connection was idle longer than
``health_check_interval``), and the read, still bounded by ``socket_timeout``, so a dead or
unreachable Redis is detected within it as before.

The command is packed by hiredis's C packer (:func:`quick_pack`) instead of redis-py's Python
one (a join per argument: 30 us for a commit script's 46 arguments, 5 us in C; about 8 % of the
service's CPU in the throughput bench). The bytes are the same (``tests/unit/test_redis_pack.py``);
whatever the C packer does not take as redis-py would (a command name with a space in it, a
``bool``, a ``memoryview``, an encoding other than UTF-8, hiredis missing) goes to redis-py's.

redis-py takes its connection class as a parameter and has no hook for the write: each class here
adds the two methods to the class it replaces (:data:`QUICK_CLASSES` maps them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

_c_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _c_pack
except ImportError:  # redis[hiredis] installs it; without it redis-py packs
    _c_pack = None


def quick_pack(conn: AbstractConnection, args: tuple[Any, ...]) -> list[bytes] | None:
    """``args`` packed as redis-py would, by hiredis; None when redis-py must pack them.

    redis-py splits a command name holding a space ("SCRIPT LOAD") into words and encodes with
    the connection's encoder (UTF-8 here, ``int``/``float`` by ``repr``, which hiredis matches);
    it refuses a ``bool`` (hiredis raises TypeError for one: redis-py then raises its own error).
    """
    if _c_pack is None or not args or conn.encoder.encoding != "utf-8":
        return None
    name = args[0]
    if (type(name) is str and " " in name) or (type(name) is bytes and b" " in name):
        return None
    for arg in args:
        kind = type(arg)
        if kind is not bytes and kind is not str and kind is not int and kind is not float:
            return None  # bool, memoryview, anything redis-py encodes (or refuses) its own way
    return [_c_pack(args)]


async def quick_send(
    conn: AbstractConnection, command: bytes | str | Iterable[bytes], check_health: bool
) -> bool:
    """Send ``command`` on a connected ``conn``; False when the caller must use redis-py's send
    (not connected, or no socket timeout to save)."""
    writer = conn._writer
    if writer is None or conn._reader is None or not conn.socket_timeout:
        return False
    if (
        check_health
        and conn.health_check_interval
        and asyncio.get_running_loop().time() > conn.next_health_check
    ):
        await conn.check_health()  # type: ignore[no-untyped-call]
        writer = conn._writer
        if writer is None:
            return False
    if isinstance(command, str):
        command = command.encode()
    if isinstance(command, bytes):
        command = [command]
    try:
        writer.writelines(command)
        transport = writer.transport
        if transport.is_closing() or transport.get_write_buffer_size():
            # Not all of it left at once (or the connection is going): wait, bounded as redis-py does.
            await asyncio.wait_for(writer.drain(), conn.socket_timeout)
    except TimeoutError:
        await conn.disconnect(nowait=True)
        raise RedisTimeoutError("Timeout writing to socket") from None
    except OSError as exc:
        await conn.disconnect(nowait=True)
        err_no, message = ("UNKNOWN", exc.args[0]) if len(exc.args) == 1 else exc.args[:2]
        raise RedisConnectionError(f"Error {err_no} while writing to socket. {message}.") from exc
    except BaseException:
        # Part of the command may have left: the connection cannot be used again (as redis-py).
        await conn.disconnect(nowait=True)
        raise
    return True


class QuickConnection(Connection):
    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not await quick_send(self, command, check_health):
            await super().send_packed_command(command, check_health)

    def pack_command(self, *args: Any) -> list[bytes]:
        return quick_pack(self, args) or super().pack_command(*args)


class QuickSSLConnection(SSLConnection):
    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not await quick_send(self, command, check_health):
            await super().send_packed_command(command, check_health)

    def pack_command(self, *args: Any) -> list[bytes]:
        return quick_pack(self, args) or super().pack_command(*args)


class QuickUnixConnection(UnixDomainSocketConnection):
    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not await quick_send(self, command, check_health):
            await super().send_packed_command(command, check_health)

    def pack_command(self, *args: Any) -> list[bytes]:
        return quick_pack(self, args) or super().pack_command(*args)


class QuickSentinelConnection(SentinelManagedConnection):
    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not await quick_send(self, command, check_health):
            await super().send_packed_command(command, check_health)

    def pack_command(self, *args: Any) -> list[bytes]:
        return quick_pack(self, args) or super().pack_command(*args)


class QuickSentinelSSLConnection(SentinelManagedSSLConnection):
    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not await quick_send(self, command, check_health):
            await super().send_packed_command(command, check_health)

    def pack_command(self, *args: Any) -> list[bytes]:
        return quick_pack(self, args) or super().pack_command(*args)


QUICK_CLASSES: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: QuickConnection,
    SSLConnection: QuickSSLConnection,
    UnixDomainSocketConnection: QuickUnixConnection,
}
