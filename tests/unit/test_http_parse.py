"""The HTTP/1.1 response parser of the lean REST path: framing, split reads, headers, closes."""

from __future__ import annotations

import pytest

from quantum_exec.exchange.http_parse import Headers, ProtocolError, ResponseParser

JSON_REPLY = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"x-mbx-used-weight-1m: 7\r\n"
    b"X-MBX-ORDER-COUNT-10S: 2\r\n"
    b"Content-Length: 13\r\n"
    b"\r\n"
    b'{"orderId":1}'
)
CHUNKED_REPLY = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
    b"5;name=value\r\n"
    b'{"cod\r\n'
    b"1A\r\n"
    b'e":-2013,"msg":"no order"}\r\n'
    b"0\r\n"
    b"X-Trailer: ignored\r\n"
    b"\r\n"
)


def parse_whole(data: bytes) -> ResponseParser:
    parser = ResponseParser()
    assert parser.feed(data) is True
    return parser


def parse_bytewise(data: bytes) -> ResponseParser:
    """Feed one byte at a time: complete only at the last byte, never before."""
    parser = ResponseParser()
    for index in range(len(data)):
        done = parser.feed(data[index : index + 1])
        assert done is (index == len(data) - 1), f"complete={done} at byte {index} of {len(data)}"
    return parser


@pytest.mark.parametrize("feed", [parse_whole, parse_bytewise])
def test_a_content_length_reply_is_framed_and_its_headers_read_in_any_case(feed: object) -> None:
    parser = feed(JSON_REPLY)  # type: ignore[operator]
    assert parser.status == 200
    assert parser.body == b'{"orderId":1}'
    assert parser.keep_alive is True
    for name in ("X-MBX-USED-WEIGHT-1M", "x-mbx-used-weight-1m", "X-Mbx-Used-Weight-1m"):
        assert parser.headers.get(name) == "7"
    assert parser.headers["x-mbx-order-count-10s"] == "2"
    assert parser.headers.get("X-MBX-ORDER-COUNT-1M") is None


@pytest.mark.parametrize("feed", [parse_whole, parse_bytewise])
def test_a_chunked_reply_is_joined_with_extensions_and_trailers_skipped(feed: object) -> None:
    parser = feed(CHUNKED_REPLY)  # type: ignore[operator]
    assert parser.status == 400
    assert parser.body == b'{"code":-2013,"msg":"no order"}'
    assert parser.text == '{"code":-2013,"msg":"no order"}'
    assert parser.keep_alive is True


def test_connection_close_makes_the_connection_single_use() -> None:
    parser = parse_whole(JSON_REPLY.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1))
    assert parser.body == b'{"orderId":1}'
    assert parser.keep_alive is False


def test_http_1_0_keeps_alive_only_when_asked() -> None:
    assert parse_whole(JSON_REPLY.replace(b"HTTP/1.1", b"HTTP/1.0")).keep_alive is False
    asked = JSON_REPLY.replace(b"HTTP/1.1", b"HTTP/1.0").replace(
        b"\r\n\r\n", b"\r\nConnection: Keep-Alive\r\n\r\n"
    )
    assert parse_whole(asked).keep_alive is True


def test_a_body_without_length_runs_to_the_close() -> None:
    parser = ResponseParser()
    assert parser.feed(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"a":') is False
    assert parser.feed(b"1}") is False
    assert parser.feed_eof() is True
    assert parser.body == b'{"a":1}'
    assert parser.keep_alive is False


def test_interim_replies_are_skipped_and_bodiless_statuses_have_no_body() -> None:
    parser = parse_whole(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n"
    )
    assert (parser.status, parser.body, parser.keep_alive) == (204, b"", True)
    assert parse_whole(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").body == b""


def test_chunked_wins_over_content_length_and_the_connection_is_not_reused() -> None:
    parser = parse_whole(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    )
    assert parser.body == b"{}"
    assert parser.keep_alive is False


def test_repeated_headers_are_joined() -> None:
    parser = parse_whole(b"HTTP/1.1 200 OK\r\nVary: a\r\nvary: b\r\nContent-Length: 0\r\n\r\n")
    assert parser.headers["Vary"] == "a, b"
    assert dict(parser.headers) == {"vary": "a, b", "content-length": "0"}


def test_bytes_past_the_reply_make_the_connection_untrusted() -> None:
    parser = parse_whole(JSON_REPLY + b"HTTP/1.1 200 OK\r\n")
    assert parser.body == b'{"orderId":1}'
    assert parser.keep_alive is False


@pytest.mark.parametrize(
    "cut",
    [0, 10, JSON_REPLY.index(b"\r\n\r\n") + 4, len(JSON_REPLY) - 1],
    ids=["nothing", "head", "empty", "body"],
)
def test_a_close_before_the_reply_is_complete_is_an_error(cut: int) -> None:
    parser = ResponseParser()
    if cut:
        assert parser.feed(JSON_REPLY[:cut]) is False
    with pytest.raises(ProtocolError, match="connection closed"):
        parser.feed_eof()


def test_a_chunked_reply_cut_before_its_last_chunk_is_an_error() -> None:
    parser = ResponseParser()
    assert parser.feed(CHUNKED_REPLY[: CHUNKED_REPLY.index(b"0\r\n")]) is False
    with pytest.raises(ProtocolError, match="mid-response"):
        parser.feed_eof()


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nName : space before colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}XX",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    ],
)
def test_malformed_replies_are_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        ResponseParser().feed(data)


def test_an_endless_head_is_refused() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(ProtocolError, match="too long"):
        parser.feed(b"X-Pad: " + b"a" * 70_000)


def test_headers_mapping_is_case_insensitive_and_read_only() -> None:
    headers = Headers({"retry-after": "5"})
    assert headers["Retry-After"] == "5" and "RETRY-AFTER" in headers and len(headers) == 1
    assert list(headers) == ["retry-after"]
