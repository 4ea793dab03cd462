"""Review of the lean HTTP client (issue #29): framing edge cases and a request cancelled mid-flight.

``str.isdigit`` is true for digits ``int()`` refuses ("²", "³", "¹" are latin-1): a Content-Length
of one escaped the parser as a ValueError, out of ``data_received``, so asyncio logged a fatal
protocol error with a traceback instead of the client raising its own NoAnswer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from decimal import Decimal

import pytest

from binance_sim import Simulator
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.gateway import BinanceGateway
from quantum_exec.exchange.http_client import Http1Pool, NoAnswer
from quantum_exec.exchange.http_parse import ProtocolError, ResponseParser
from quantum_exec.exchange.wire import OrderSide
from support.sim_state import orders
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ODD_LENGTH = "HTTP/1.1 200 OK\r\nContent-Length: \u00b2\r\n\r\n{}".encode("latin-1")


def test_a_content_length_of_non_ascii_digits_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="Content-Length"):
        ResponseParser().feed(ODD_LENGTH)


async def test_a_content_length_of_non_ascii_digits_is_no_answer_and_nothing_crashes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ODD_LENGTH)
        await writer.drain()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    pool = Http1Pool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    try:
        with caplog.at_level(logging.ERROR, logger="asyncio"), pytest.raises(NoAnswer, match="unreadable"):
            await pool.request(b"GET / HTTP/1.1\r\n\r\n", 5)
    finally:
        await pool.close()
        server.close()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


async def test_an_order_cancelled_mid_flight_is_placed_once_and_its_late_answer_is_never_read(
    make_settings: Callable[..., Settings], sim: Simulator
) -> None:
    gateway = BinanceGateway(make_settings(), sim.base_url)
    await gateway.sync_time()  # a kept-alive connection: the order below is written on it
    pool = gateway._rest._http
    sim.set_faults({"faults": [{"kind": "latency", "method": "POST", "path": "/fapi/v1/order", "ms": 400}]})
    try:
        placing = asyncio.ensure_future(
            gateway.place_market("BTCUSDT", OrderSide.BUY, Decimal("0.002"), "qxe-review-cancel")
        )
        await wait_for(lambda: not pool._idle or placing.done(), 5, "the order written")
        placing.cancel()  # a shutdown's hurry while the simulator holds the request
        with pytest.raises(asyncio.CancelledError):
            await placing
        sim.set_faults({"faults": []})
        # The simulator goes on with the request it read (as an exchange would): placed once.
        await wait_for(lambda: bool(orders(sim, symbol="BTCUSDT")), 5, "the order placed")
        # The next requests read their own answers, never the cancelled one's.
        found = await gateway.get_order("BTCUSDT", "qxe-review-cancel")
        missing = await gateway.get_order("BTCUSDT", "qxe-review-never")
    finally:
        await gateway.close()
    placed = orders(sim, symbol="BTCUSDT")
    assert [o["clientOrderId"] for o in placed] == ["qxe-review-cancel"]
    assert found is not None and found.order_id == placed[0]["orderId"]
    assert missing is None
