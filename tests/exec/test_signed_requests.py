"""The lean REST path: the query string is built once, signed as sent, and the simulator agrees."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

import pytest

from binance_sim import Simulator
from quantum_exec.core.errors import PermanentError, UnknownOutcomeError
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.endpoints import EP_GET_ORDER, EP_TIME
from quantum_exec.exchange.gateway import BinanceGateway
from quantum_exec.exchange.wire import OrderSide
from support.sim_state import orders

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_the_signature_is_the_hmac_of_the_query_exactly_as_sent(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    gateway = BinanceGateway(settings, "http://127.0.0.1:9")
    url = gateway._rest.url(EP_GET_ORDER, {"symbol": "BTCUSDT", "origClientOrderId": "a:b/c d&e"})
    path, query = urlsplit(url).path, urlsplit(url).query
    signed, signature = query.rsplit("&signature=", 1)
    secret = settings.api_secret.get_secret_value().encode()  # type: ignore[union-attr]
    assert path == "/fapi/v1/order"
    assert signature == hmac.new(secret, signed.encode(), hashlib.sha256).hexdigest()
    params = dict(parse_qsl(signed))
    assert params["origClientOrderId"] == "a:b/c d&e"  # every unsafe character percent-encoded
    assert params["recvWindow"] == str(settings.recv_window_ms)
    assert list(params)[:2] == ["symbol", "origClientOrderId"]  # the caller's order, not sorted
    assert gateway._rest.url(EP_TIME, None).endswith("/fapi/v1/time")  # unsigned: no query at all


async def test_orders_with_characters_that_need_encoding_are_placed_and_found(
    make_settings: Callable[..., Settings], sim: Simulator
) -> None:
    gateway = BinanceGateway(make_settings(), sim.base_url)
    await gateway.start()
    try:
        client_id = "qxe:lean/1.path-_x"  # Binance allows . : / _ - in client ids
        placed = await gateway.place_market("BTCUSDT", OrderSide.BUY, Decimal("0.002"), client_id)
        found = await gateway.get_order("BTCUSDT", client_id)
    finally:
        await gateway.close()
    assert placed.client_order_id == client_id
    assert found is not None and found.order_id == placed.order_id
    assert found.executed_qty == Decimal("0.002")
    assert [o["clientOrderId"] for o in orders(sim, symbol="BTCUSDT")] == [client_id]


async def test_a_request_signed_with_the_wrong_secret_is_refused(
    make_settings: Callable[..., Settings], sim: Simulator
) -> None:
    gateway = BinanceGateway(make_settings(api_secret="not-the-secret-" + "0" * 48), sim.base_url)
    await gateway.sync_time()
    try:
        with pytest.raises(PermanentError) as refused:
            await gateway.get_order("BTCUSDT", "qxe-none")
    finally:
        await gateway.close()
    assert refused.value.code == -1022


@pytest.mark.parametrize("kind", ["drop_after", "drop_before", "truncated_after"])
async def test_a_lost_answer_is_an_unknown_outcome_and_the_next_request_reconnects(
    make_settings: Callable[..., Settings], sim: Simulator, kind: str
) -> None:
    gateway = BinanceGateway(make_settings(), sim.base_url)
    await gateway.sync_time()  # a kept-alive connection exists before the fault
    sim.set_faults({"faults": [{"kind": kind, "method": "POST", "path": "/fapi/v1/order", "count": 1}]})
    client_id = f"qxe-lost-{kind}"
    try:
        with pytest.raises(UnknownOutcomeError) as lost:
            await gateway.place_market("BTCUSDT", OrderSide.BUY, Decimal("0.002"), client_id)
        found = await gateway.get_order("BTCUSDT", client_id)  # on a new connection
    finally:
        await gateway.close()
    assert lost.value.sent_at is not None
    placed = [o["clientOrderId"] for o in orders(sim, symbol="BTCUSDT")]
    # Sent once: processed before the loss (after) or not at all (before), never twice.
    assert placed == ([] if kind == "drop_before" else [client_id])
    assert (found is not None) is (kind != "drop_before")
