"""Orders over Binance's WebSocket API (QUANTUM_ORDER_TRANSPORT=websocket) against the simulator's
``/ws-fapi/v1``: same results as REST, unknown outcomes looked up (never re-sent), REST when down."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from binance_sim import Simulator
from binance_sim.ws_api import signed_payload
from quantum_exec.contracts import ProtectionState, ResultStatus
from quantum_exec.core.errors import UnknownOutcomeError
from quantum_exec.core.ids import client_order_id
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.wire import OrderSide, OrderType
from quantum_exec.exchange.ws_api import Unanswered, WsApi
from quantum_exec.execution.executor import Executor, create_executor
from support.desk import Desk
from support.sim_state import algo_orders, intent, orders
from support.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
async def ws_executor(make_settings: Callable[..., Settings]) -> AsyncIterator[Executor]:
    ex = await create_executor(make_settings(order_transport="websocket"))
    try:
        yield ex
    finally:
        await ex.close()


def _over_ws(sim: Simulator) -> dict[str, int]:
    return {k: v for k, v in sim.request_counts.items() if k.startswith("WS ")}


async def test_a_whole_intent_travels_over_the_websocket_api(ws_executor: Executor, sim: Simulator) -> None:
    assert ws_executor.gateway.ws is not None and ws_executor.gateway.ws.connected
    rest_before = sim.request_counts["POST /fapi/v1/order"]
    result = await ws_executor.execute(
        intent(
            intent_id="ws-1",
            symbol="BTCUSDT",
            side="BUY",
            quantity="0.01",
            stop_loss_pct=2,
            take_profit_pct=3,
        )
    )
    assert result.status is ResultStatus.FILLED and result.protection is ProtectionState.PROTECTED
    assert _over_ws(sim) == {"WS order.place": 1, "WS algoOrder.place": 2}
    assert sim.request_counts["POST /fapi/v1/order"] == rest_before  # nothing of it over REST
    [entry] = orders(sim, symbol="BTCUSDT", type_="MARKET")
    assert entry["orderId"] == result.order_id and Decimal(entry["executedQty"]) == Decimal("0.01")
    # status and cancel too: a resting LIMIT placed, looked up and cancelled over the socket.
    gateway = ws_executor.gateway
    mark = await gateway.mark_price("ETHUSDT")
    cid = "qx-ws-limit-1"
    placed = await gateway.place_limit(
        "ETHUSDT",
        OrderSide.BUY,
        Decimal("0.01"),
        (mark * Decimal("0.97")).quantize(Decimal("0.01")),
        cid,
        time_in_force="GTC",
    )
    found = await gateway.get_order("ETHUSDT", cid)
    cancelled = await gateway.cancel_order("ETHUSDT", cid)
    assert found is not None and found.order_id == placed.order_id
    assert cancelled is not None and cancelled.status.value == "CANCELED"
    assert {"WS order.status", "WS order.cancel"} <= set(_over_ws(sim))


async def test_an_exchange_refusal_over_the_socket_is_the_same_typed_answer(
    ws_executor: Executor, sim: Simulator
) -> None:
    sim.set_balance("USDT", Decimal("1"))
    result = await ws_executor.execute(
        intent(intent_id="ws-poor", symbol="ETHUSDT", side="BUY", quantity="1")
    )
    assert (
        result.status is ResultStatus.REJECTED and result.error is not None and result.error.code == "-2019"
    )


@pytest.mark.parametrize("kind", ["drop_after", "unknown_after"])
async def test_no_answer_over_the_socket_is_looked_up_never_sent_twice(
    ws_executor: Executor, sim: Simulator, kind: str
) -> None:
    sim.set_faults(faults=[{"kind": kind, "method": "POST", "path": "/fapi/v1/order", "count": 1}])
    result = await ws_executor.execute(
        intent(intent_id=f"ws-{kind}", symbol="SOLUSDT", side="BUY", position_size_usd=300, stop_loss_pct=3)
    )
    assert result.status is ResultStatus.FILLED, result.error
    entries = orders(sim, symbol="SOLUSDT", type_="MARKET")
    assert len(entries) == 1 and entries[0]["clientOrderId"] == client_order_id(f"ws-{kind}", "entry")
    assert result.protection is ProtectionState.PROTECTED
    assert sim.request_counts["WS order.place"] == 1  # sent once over the socket, found by lookup
    # The socket comes back after a drop, and carries the next order.
    ws = ws_executor.gateway.ws
    assert ws is not None
    await wait_for(lambda: ws.connected, 10, "the WebSocket API reconnected")
    again = await ws_executor.execute(
        intent(intent_id=f"ws-{kind}-2", symbol="SOLUSDT", side="BUY", position_size_usd=300)
    )
    assert again.status is ResultStatus.FILLED and sim.request_counts["WS order.place"] == 2


# The requests whose 200 answers arrive unreadable (the simulator's routes), by the WebSocket API
# method the case is about; order.status: the entry's answer, then its lookup's.
UNREADABLE = {
    "order.place": [("POST", "/fapi/v1/order")],
    "algoOrder.place": [("POST", "/fapi/v1/algoOrder")],
    "order.status": [("POST", "/fapi/v1/order"), ("GET", "/fapi/v1/order")],
}


@pytest.mark.parametrize(
    ("method", "kind"),
    [
        ("order.place", "garbled_after"),
        ("order.place", "truncated_after"),
        ("algoOrder.place", "garbled_after"),
        ("algoOrder.place", "truncated_after"),
        ("order.status", "garbled_after"),  # a frame cut off closes the socket: the lookup is REST's
    ],
)
async def test_an_unreadable_answer_over_the_socket_is_an_unknown_outcome_looked_up(
    desk: Desk, method: str, kind: str
) -> None:
    """A 200 whose result lacks its fields, or a frame cut off: the request was executed, so it
    is looked up by client id and the intent completes, filled and protected, nothing sent twice."""
    service = await desk.service(order_transport="websocket")
    assert service.executor is not None and service.executor.gateway.ws is not None
    sim = desk.sim
    sim.set_faults(
        faults=[{"kind": kind, "method": verb, "path": path, "count": 1} for verb, path in UNREADABLE[method]]
    )
    intent_id = f"ws-{kind}-{method}"
    await desk.publish(
        intent_id=intent_id,
        symbol="BTCUSDT",
        side="BUY",
        quantity="0.01",
        stop_loss_pct="2",
        take_profit_pct="3",
    )
    result = await desk.result(intent_id)
    assert result.status is ResultStatus.FILLED, result.error
    assert result.protection is ProtectionState.PROTECTED, result.error
    # At once: an answer that cannot be read is not waited out like a missing one.
    timeout_ms = service.settings.request_timeout_s * 1000
    assert result.latency_ms is not None and result.latency_ms < timeout_ms, result.latency_ms
    assert not sim.faults.rules and sim.request_counts[f"WS {method}"] >= 1, "the faults were not used"
    entries = orders(sim, symbol="BTCUSDT", type_="MARKET")
    assert [e["clientOrderId"] for e in entries] == [client_order_id(intent_id, "entry")]  # P2
    assert entries[0]["status"] == "FILLED" and result.order_id == entries[0]["orderId"]
    assert result.stop_loss is not None and result.take_profit is not None
    legs = algo_orders(sim, symbol="BTCUSDT")
    assert sorted(a["clientAlgoId"] for a in legs) == sorted(
        [result.stop_loss.client_algo_id, result.take_profit.client_algo_id]
    )  # each leg placed once
    assert all(a["algoStatus"] == "NEW" for a in legs)
    assert {a["algoId"] for a in legs} == {result.stop_loss.algo_id, result.take_profit.algo_id}


def _garble(sim: Simulator, method: str, path: str) -> None:
    sim.set_faults(faults=[{"kind": "garbled_after", "method": method, "path": path, "count": 1}])


async def test_unreadable_answers_to_a_cancel_are_unknown_and_to_a_read_asked_again(
    ws_executor: Executor, sim: Simulator
) -> None:
    """order.cancel / algoOrder.cancel answered unreadably: an unknown outcome (the cancel took
    effect on the exchange); order.status answered unreadably: asked again over REST."""
    gateway = ws_executor.gateway
    mark = await gateway.mark_price("ETHUSDT")
    cid = "qx-ws-garbled-1"
    placed = await gateway.place_limit(
        "ETHUSDT",
        OrderSide.BUY,
        Decimal("0.01"),
        (mark * Decimal("0.97")).quantize(Decimal("0.01")),
        cid,
        time_in_force="GTC",
    )
    rest_reads = sim.request_counts["GET /fapi/v1/order"]
    _garble(sim, "GET", "/fapi/v1/order")
    found = await gateway.get_order("ETHUSDT", cid)
    assert found is not None and found.order_id == placed.order_id
    assert sim.request_counts["WS order.status"] == 1
    assert sim.request_counts["GET /fapi/v1/order"] == rest_reads + 1  # asked again over REST

    _garble(sim, "DELETE", "/fapi/v1/order")
    with pytest.raises(UnknownOutcomeError):
        await gateway.cancel_order("ETHUSDT", cid)
    [limit] = orders(sim, symbol="ETHUSDT", type_="LIMIT")
    assert limit["status"] == "CANCELED" and sim.request_counts["WS order.cancel"] == 1

    algo = await gateway.place_algo(
        "ETHUSDT",
        OrderSide.SELL,
        OrderType.STOP_MARKET,
        (mark * Decimal("0.9")).quantize(Decimal("0.01")),
        "qx-ws-garbled-2",
        quantity=None,
        working_type="MARK_PRICE",
        price_protect=False,
    )
    _garble(sim, "DELETE", "/fapi/v1/algoOrder")
    with pytest.raises(UnknownOutcomeError):
        await gateway.cancel_algo(algo.algo_id)
    [stop] = algo_orders(sim, symbol="ETHUSDT")
    assert stop["algoStatus"] == "CANCELED" and sim.request_counts["WS algoOrder.cancel"] == 1
    assert not sim.faults.rules


async def test_a_frame_that_answers_no_request_leaves_the_socket_working(
    ws_executor: Executor, sim: Simulator
) -> None:
    """An answer whose id matches no request (Binance's ``"id": null`` to a frame it cannot read)
    is dropped: the reader goes on and the next request is answered over the same socket."""
    ws = ws_executor.gateway.ws
    assert ws is not None and ws._ws is not None
    # Answered {"id": null, "status": 400, ...} and {"id": "qx-nobody", "status": 400, ...}.
    await ws._ws.send_str("not a request")
    await ws._ws.send_str(orjson.dumps({"id": "qx-nobody", "method": "order.explode"}).decode())
    for attempt in range(2):
        found = await ws_executor.gateway.get_order("ETHUSDT", f"qx-never-placed-{attempt}")
        assert found is None and sim.request_counts["WS order.status"] == attempt + 1
    assert ws.connected and sim.request_counts["GET /fapi/v1/order"] == 0


async def test_a_frame_that_is_no_answer_object_fails_the_pending_request_at_once_and_reconnects() -> None:
    """JSON that is not an object (Binance never sends one; the simulator cannot) answered some
    pending request, which one cannot be told: that request is unanswered at once (an unknown
    outcome, not a wait for the timeout), and the reader lives on over a new connection. A peer
    scripted here sends it, the only fake in this file."""
    connections = 0

    async def serve(request: web.Request) -> web.WebSocketResponse:
        nonlocal connections
        connections += 1
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            ident = orjson.loads(message.data)["id"]
            if connections == 1:
                await ws.send_str(orjson.dumps([ident, 200]).decode())
            else:
                await ws.send_str(orjson.dumps({"id": ident, "status": 200, "result": {"ok": 1}}).decode())
        return ws

    app = web.Application()
    app.router.add_get("/ws-fapi/v1", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    timeout_s = 5.0
    api = WsApi(
        f"ws://127.0.0.1:{port}/ws-fapi/v1",
        "key",
        lambda payload: "signature",
        timeout_s=timeout_s,
        recv_window_ms=1000,
        clock_offset_ms=lambda: 0,
    )
    try:
        await api.start()
        asked_at = time.monotonic()
        with pytest.raises(Unanswered):
            await api.request("order.status", {"symbol": "BTCUSDT", "origClientOrderId": "qx-1"})
        assert time.monotonic() - asked_at < timeout_s / 2
        await wait_for(lambda: api.connected, 10, "the WebSocket API reconnected")
        answer = await api.request("order.status", {"symbol": "BTCUSDT", "origClientOrderId": "qx-1"})
        assert answer.status == 200 and answer.result == {"ok": 1} and connections == 2
    finally:
        await api.close()
        await runner.cleanup()


async def test_while_the_socket_is_down_orders_go_over_rest(
    make_settings: Callable[..., Settings], sim: Simulator
) -> None:
    # A WebSocket API URL nobody serves: the transport never connects, REST carries everything.
    ex = await create_executor(
        make_settings(
            order_transport="websocket", binance_ws_api_url=sim.base_url.replace("http", "ws") + "/nowhere"
        )
    )
    try:
        result = await ex.execute(
            intent(intent_id="ws-down", symbol="XRPUSDT", side="SELL", position_size_usd=200)
        )
    finally:
        await ex.close()
    assert result.status is ResultStatus.FILLED, result.error
    assert not _over_ws(sim) and len(orders(sim, symbol="XRPUSDT")) == 1


async def test_the_simulator_answers_like_binance(sim: Simulator) -> None:
    """Shapes of the simulator's WebSocket API: result + rateLimits, error + code, a bad signature."""
    import hashlib
    import hmac
    import time

    url = sim.base_url.replace("http", "ws") + "/ws-fapi/v1"

    def signed(params: dict[str, str], secret: str = "quantum-sim-secret") -> dict[str, str]:
        full = {**params, "apiKey": "quantum-sim-key", "timestamp": str(int(time.time() * 1000))}
        full["signature"] = hmac.new(secret.encode(), signed_payload(full), hashlib.sha256).hexdigest()
        return full

    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:

        async def ask(method: str, params: dict[str, str]) -> dict[str, Any]:
            await ws.send_str(orjson.dumps({"id": "r1", "method": method, "params": params}).decode())
            return dict(orjson.loads((await ws.receive()).data))

        placed = await ask(
            "order.place",
            signed(
                {
                    "symbol": "BTCUSDT",
                    "side": "BUY",
                    "type": "MARKET",
                    "quantity": "0.002",
                    "newOrderRespType": "RESULT",
                }
            ),
        )
        assert placed["id"] == "r1" and placed["status"] == 200 and placed["result"]["status"] == "FILLED"
        kinds = {(r["rateLimitType"], r["interval"]): r for r in placed["rateLimits"]}
        assert kinds[("ORDERS", "SECOND")]["limit"] == 300 and kinds[("ORDERS", "SECOND")]["count"] >= 1
        missing = await ask("order.status", signed({"symbol": "BTCUSDT", "origClientOrderId": "nope"}))
        assert missing["status"] == 400 and missing["error"]["code"] == -2013
        forged = await ask("order.status", signed({"symbol": "BTCUSDT", "orderId": "1"}, secret="wrong"))
        assert forged["error"] == {"code": -1022, "msg": "Signature for this request is not valid."}
        unknown = await ask("order.explode", {})
        assert unknown["status"] == 400 and unknown["error"]["code"] == -1102
