"""The lean HTTP/1.1 client against scripted servers: reuse, stale connections, drops, TLS, timeouts.

Each server reads whole request heads and answers as its test scripts it, recording every request
it read, so a test can tell "sent once" from "sent twice".
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvloop

from quantum_exec.exchange.http_client import Http1Pool, NoAnswer, NotSent
from support.waiting import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(30),
    # The per-module loop choice below; its replacement hook would switch the loop for every test here.
    pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture:DeprecationWarning'),
]

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-MBX-USED-WEIGHT-1M: 3\r\n\r\n{}"

# What the server does with the n-th request (from 0) on a connection: bytes to answer (None: close
# without answering), whether to close after answering.
Script = Callable[[int, bytes], Awaitable[tuple[bytes | None, bool]]]


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Every test on the default loop and on uvloop (the service's)."""
    return uvloop.EventLoopPolicy() if request.param == "uvloop" else asyncio.DefaultEventLoopPolicy()


@dataclass
class Server:
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


async def _serve(
    server: Server, script: Script, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    server.connections += 1
    server.writers.append(writer)
    try:
        for index in range(1000):
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            server.requests.append(head)
            answer, close = await script(index, head)
            if answer is None:
                return
            writer.write(answer)
            await writer.drain()
            if close:
                return
    finally:
        writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    servers: list[asyncio.Server] = []

    async def start(script: Script, ssl_context: ssl.SSLContext | None = None) -> Server:
        state = Server()
        srv = await asyncio.start_server(
            lambda r, w: _serve(state, script, r, w), "127.0.0.1", 0, ssl=ssl_context
        )
        servers.append(srv)
        state.port = srv.sockets[0].getsockname()[1]
        return state

    yield start
    for srv in servers:
        srv.close()


def answer_ok(close: bool = False) -> Script:
    async def script(index: int, head: bytes) -> tuple[bytes | None, bool]:
        return OK, close

    return script


async def test_requests_reuse_one_kept_alive_connection(serve: Callable[..., Awaitable[Server]]) -> None:
    server = await serve(answer_ok())
    pool = Http1Pool(f"http://127.0.0.1:{server.port}")
    try:
        for _ in range(3):
            reply = await pool.request(b"GET /fapi/v1/time HTTP/1.1\r\nHost: x\r\n\r\n", 5)
            assert (reply.status, reply.body, reply.headers["x-mbx-used-weight-1m"]) == (200, b"{}", "3")
    finally:
        await pool.close()
    assert len(server.requests) == 3
    assert server.connections == 1


async def test_concurrent_requests_open_connections_up_to_the_limit(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    release = asyncio.Event()

    async def slow(index: int, head: bytes) -> tuple[bytes | None, bool]:
        await release.wait()
        return OK, False

    server = await serve(slow)
    pool = Http1Pool(f"http://127.0.0.1:{server.port}", limit=3)
    try:
        requests = [asyncio.create_task(pool.request(b"GET / HTTP/1.1\r\n\r\n", 10)) for _ in range(5)]
        await wait_for(lambda: len(server.requests) == 3, 10, "three requests at the server")
        assert server.connections == 3  # the other two wait for a connection, none opened past the limit
        release.set()
        replies = await asyncio.gather(*requests)
    finally:
        await pool.close()
    assert [r.status for r in replies] == [200] * 5
    assert len(server.requests) == 5 and server.connections == 3


async def test_a_connection_the_server_closed_after_answering_is_not_reused(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    # The server answers with keep-alive and then closes the idle connection (its idle timeout).
    server = await serve(answer_ok(close=True))
    pool = Http1Pool(f"http://127.0.0.1:{server.port}")
    try:
        await pool.request(b"POST /fapi/v1/order HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 5)
        await wait_for(lambda: not pool._idle[0].usable, 5, "the client to see the server's close")
        reply = await pool.request(b"POST /fapi/v1/order HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 5)
    finally:
        await pool.close()
    assert reply.status == 200
    assert len(server.requests) == 2  # each sent exactly once
    assert server.connections == 2


async def test_a_connection_closed_without_an_answer_is_no_answer_and_never_resent(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    async def first_ok_then_drop(index: int, head: bytes) -> tuple[bytes | None, bool]:
        return (OK, False) if index == 0 else (None, True)

    server = await serve(first_ok_then_drop)
    pool = Http1Pool(f"http://127.0.0.1:{server.port}")
    try:
        await pool.request(b"GET / HTTP/1.1\r\n\r\n", 5)
        with pytest.raises(NoAnswer, match="connection"):
            await pool.request(b"POST /fapi/v1/order?x=1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 5)
    finally:
        await pool.close()
    assert [h.split(b" ")[1] for h in server.requests] == [b"/", b"/fapi/v1/order?x=1"]  # not re-sent


async def test_an_answer_cut_off_is_no_answer(serve: Callable[..., Awaitable[Server]]) -> None:
    async def cut(index: int, head: bytes) -> tuple[bytes | None, bool]:
        return OK[:-1], True

    server = await serve(cut)
    pool = Http1Pool(f"http://127.0.0.1:{server.port}")
    try:
        with pytest.raises(NoAnswer, match="mid-response"):
            await pool.request(b"GET / HTTP/1.1\r\n\r\n", 5)
    finally:
        await pool.close()
    assert len(server.requests) == 1


async def test_connection_close_and_chunked_answers_over_a_socket(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b'3\r\n{"a\r\n4\r\n":1}\r\n0\r\n\r\n'
    )

    async def script(index: int, head: bytes) -> tuple[bytes | None, bool]:
        return chunked, False  # the server keeps the socket open: the client must close it

    server = await serve(script)
    pool = Http1Pool(f"http://127.0.0.1:{server.port}")
    try:
        first = await pool.request(b"GET / HTTP/1.1\r\n\r\n", 5)
        second = await pool.request(b"GET / HTTP/1.1\r\n\r\n", 5)
    finally:
        await pool.close()
    assert first.body == second.body == b'{"a":1}'
    assert server.connections == 2  # "Connection: close" was honoured


async def test_no_answer_in_time_is_a_timeout_and_the_connection_is_dropped(
    serve: Callable[..., Awaitable[Server]],
) -> None:
    never = asyncio.Event()

    async def hang(index: int, head: bytes) -> tuple[bytes | None, bool]:
        if index == 0 and len(hang_calls) == 0:
            hang_calls.append(head)
            await never.wait()
        return OK, False

    hang_calls: list[bytes] = []
    server = await serve(hang)
    pool = Http1Pool(f"http://127.0.0.1:{server.port}")
    try:
        with pytest.raises(TimeoutError):
            await pool.request(b"GET / HTTP/1.1\r\n\r\n", 0.2)
        reply = await pool.request(b"GET / HTTP/1.1\r\n\r\n", 5)
    finally:
        await pool.close()
        never.set()
    assert reply.status == 200
    assert server.connections == 2  # the late answer can never be read as the next request's


async def test_nothing_listening_is_not_sent() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    pool = Http1Pool(f"http://127.0.0.1:{port}")
    try:
        with pytest.raises(NotSent, match="cannot connect"):
            await pool.request(b"GET / HTTP/1.1\r\n\r\n", 5)
    finally:
        await pool.close()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_https_verifies_the_server_by_name(
    serve: Callable[..., Awaitable[Server]], tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    server = await serve(answer_ok(), server_side)
    trusting = ssl.create_default_context(cafile=str(cert))
    pool = Http1Pool(f"https://localhost:{server.port}", ssl_context=trusting)
    try:
        replies = [await pool.request(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", 5) for _ in range(2)]
    finally:
        await pool.close()
    assert [r.body for r in replies] == [b"{}", b"{}"]
    assert server.connections == 1
    untrusting = Http1Pool(f"https://localhost:{server.port}")  # the system's CAs do not know this one
    try:
        with pytest.raises(NotSent):
            await untrusting.request(b"GET / HTTP/1.1\r\n\r\n", 5)
    finally:
        await untrusting.close()
    assert len(server.requests) == 2


def test_the_host_header_names_the_port_only_when_it_is_not_the_schemes() -> None:
    assert Http1Pool("https://fapi.binance.com").authority == "fapi.binance.com"
    assert Http1Pool("https://fapi.binance.com:443/").port == 443
    assert Http1Pool("http://127.0.0.1:8080").authority == "127.0.0.1:8080"
    assert Http1Pool("http://[::1]:81").authority == "[::1]:81"
    with pytest.raises(ValueError):
        Http1Pool("ftp://example.com")
