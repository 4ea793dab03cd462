"""The C packer of the quick connections sends the very bytes redis-py's packer would."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import DataError

from quantum_exec.core.redis_conn import QuickConnection, QuickUnixConnection, quick_pack

COMMANDS: list[tuple[Any, ...]] = [
    ("GET", "qe:idem:abc"),
    (b"EVALSHA", "a" * 40, 3, "k1", b"k2", "k3", 0, -7, 2**70, 1.5, 1e-07, 1e20, 0.30000000000000004),
    ("XADD", "qe:results", "MAXLEN", "~", 100_000, "*", "reason", "é ünïcode", b"\x00\xff raw", ""),
    ("SET", "k", "x" * 10_000),  # above redis-py's buffer cutoff: it sends chunks, same bytes
    ("SCRIPT LOAD", "return 1"),  # a name with a space: redis-py splits it
    (b"CLIENT SETNAME", b"quantum-exec"),
]


KINDS = [(QuickConnection, Connection), (QuickUnixConnection, UnixDomainSocketConnection)]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: str(a[0]))
@pytest.mark.parametrize("kinds", KINDS)
def test_same_bytes_as_redis_py(args: tuple[Any, ...], kinds: tuple[type, type]) -> None:
    quick, plain = kinds[0](), kinds[1]()
    assert b"".join(quick.pack_command(*args)) == b"".join(plain.pack_command(*args))
    assert b"".join(quick.pack_commands([args, args])) == b"".join(plain.pack_commands([args, args]))


def test_c_packer_takes_the_common_commands() -> None:
    conn = QuickConnection()
    assert quick_pack(conn, COMMANDS[0]) is not None
    assert quick_pack(conn, COMMANDS[1]) is not None
    assert quick_pack(conn, COMMANDS[4]) is None  # redis-py splits the name


def test_what_redis_py_refuses_is_still_refused() -> None:
    with pytest.raises(DataError):
        QuickConnection().pack_command("SET", "k", True)


def test_memoryview_and_other_encodings_go_to_redis_py() -> None:
    view = memoryview(b"abc")
    assert quick_pack(QuickConnection(), ("SET", "k", view)) is None
    assert b"".join(QuickConnection().pack_command("SET", "k", view)) == b"".join(
        Connection().pack_command("SET", "k", view)
    )
    latin = QuickConnection(encoding="latin-1")
    assert quick_pack(latin, ("SET", "k", "é")) is None
    assert b"".join(latin.pack_command("SET", "k", "é")) == b"".join(
        Connection(encoding="latin-1").pack_command("SET", "k", "é")
    )
