"""The user data stream: listenKey endpoints, sockets, every event type (strict models), faults."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from binance import AsyncClient, BinanceSocketManager

from binance_sim import SimConfig, Simulator
from support.waiting import wait_for

from .conftest import Raw
from .stream_models import AccountUpdate, AlgoUpdate, OrderTradeUpdate, parse

pytestmark = pytest.mark.timeout(30)


class Listener:
    """One WebSocket on the simulator collecting every event it receives (parsed strictly)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.out_of_order: list[tuple[int, int]] = []
        self.closed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                event = orjson.loads(message.data)
                inner = event["data"] if set(event) == {"stream", "data"} else event  # /private/stream
                parse(inner)  # strict: unknown keys or wrong JSON types fail the test here
                last = self.events[-1].get("data", self.events[-1]) if self.events else None
                if last is not None and int(inner["E"]) <= int(last["E"]):
                    self.out_of_order.append((int(last["E"]), int(inner["E"])))
                self.events.append(event)
        self.closed.set()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["e"] == kind]

    async def wait(self, what: str, predicate: Any, timeout_s: float = 5.0) -> None:
        await wait_for(lambda: any(predicate(e) for e in self.events), timeout_s, what)

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        assert self.out_of_order == []  # E strictly increases on one connection


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def listen_key(raw: Raw) -> str:
    status, body, _ = await raw.request("POST", "/fapi/v1/listenKey")
    assert status == 200, body
    key = body["listenKey"]
    assert isinstance(key, str) and len(key) == 64
    return key


async def connect(session: aiohttp.ClientSession, sim: Simulator, path: str) -> Listener:
    ws = await session.ws_connect(sim.base_url.replace("http", "ws") + path)
    listener = Listener(ws)
    await wait_for(lambda: len(sim.stream.connections) > 0, 5, "the socket to register")
    return listener


async def order(raw: Raw, **params: Any) -> dict[str, Any]:
    status, body, _ = await raw.signed("POST", "/fapi/v1/order", {"symbol": "BTCUSDT", **params})
    assert status == 200, body
    return dict(body)


async def algo(raw: Raw, **params: Any) -> tuple[int, dict[str, Any]]:
    status, body, _ = await raw.signed(
        "POST", "/fapi/v1/algoOrder", {"symbol": "BTCUSDT", "algoType": "CONDITIONAL", **params}
    )
    return status, dict(body)


async def mark(raw: Raw, price: str) -> None:
    async with raw.session.post(
        f"{raw.base_url}/_sim/markPrice", json={"symbol": "BTCUSDT", "price": price}
    ) as r:
        assert r.status == 200, await r.text()


async def test_listen_key_post_shares_put_extends_delete_closes(
    sim: Simulator, raw: Raw, session: aiohttp.ClientSession
) -> None:
    first = await listen_key(raw)
    assert await listen_key(raw) == first  # every instance of the account shares the active key
    listener = await connect(session, sim, f"/private/ws/{first}")
    status, body, _ = await raw.request("PUT", "/fapi/v1/listenKey", body=f"listenKey={first}")
    assert (status, body) == (200, {"listenKey": first})
    status, body, _ = await raw.request("DELETE", "/fapi/v1/listenKey", body=f"listenKey={first}")
    assert (status, body) == (200, {})
    await asyncio.wait_for(listener.closed.wait(), 5)  # DELETE closes the key's sockets
    assert listener.events == []  # closed, not expired: no listenKeyExpired
    for method in ("PUT", "DELETE"):
        status, body, _ = await raw.request(method, "/fapi/v1/listenKey", body=f"listenKey={first}")
        assert (status, body) == (400, {"code": -1125, "msg": "This listenKey does not exist."})
    assert await listen_key(raw) != first
    status, body, _ = await raw.request("POST", "/fapi/v1/listenKey", api_key=None)
    assert (status, body["code"]) == (401, -2014)
    status, body, _ = await raw.request("POST", "/fapi/v1/listenKey", api_key="someone-else")
    assert (status, body["code"]) == (401, -2015)


@pytest.mark.parametrize("sim_config", [SimConfig(rate_limits=False, listen_key_lifetime_ms=300)])
async def test_listen_key_expires_without_keepalive(
    sim: Simulator, raw: Raw, session: aiohttp.ClientSession
) -> None:
    key = await listen_key(raw)
    listener = await connect(session, sim, f"/private/ws/{key}")
    await listener.wait("listenKeyExpired", lambda e: e["e"] == "listenKeyExpired")
    assert listener.events == [{"e": "listenKeyExpired", "E": listener.events[0]["E"], "listenKey": key}]
    assert isinstance(listener.events[0]["E"], str)
    # On Binance the event says nothing about the connection: the socket stays open, and silent.
    assert not listener.closed.is_set() and not listener.ws.closed
    new_key = await listen_key(raw)
    assert new_key != key
    await order(raw, side="BUY", type="MARKET", quantity="0.010")
    fresh = await connect(session, sim, f"/private/ws/{new_key}")
    await order(raw, side="SELL", type="MARKET", quantity="0.010")
    await fresh.wait(
        "the new key's fill", lambda e: e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["X"] == "FILLED"
    )
    assert [e["e"] for e in listener.events] == ["listenKeyExpired"]  # the old socket heard nothing more
    await fresh.close()
    status, body, _ = await raw.request("PUT", "/fapi/v1/listenKey", body=f"listenKey={key}")
    assert (status, body["code"]) == (400, -1125)
    async with session.get(sim.base_url + f"/private/ws/{key}") as r:
        assert r.status == 400 and (await r.json())["code"] == -1125


@pytest.mark.parametrize("path", ["/private/ws/{key}", "/private/ws?listenKey={key}"])
async def test_every_url_and_connection_gets_every_event_in_e_order(
    sim: Simulator, raw: Raw, session: aiohttp.ClientSession, path: str
) -> None:
    key = await listen_key(raw)
    one = await connect(session, sim, path.format(key=key))
    two = await connect(session, sim, f"/private/ws/{key}")
    await wait_for(lambda: len(sim.stream.connections) == 2, 5, "two sockets")
    placed = await order(raw, side="BUY", type="MARKET", quantity="0.010", newClientOrderId="entry")
    for listener in (one, two):
        await listener.wait("the entry's ACCOUNT_UPDATE", lambda e: e["e"] == "ACCOUNT_UPDATE")
    assert one.events == two.events
    kinds = [e["e"] for e in one.events]
    assert kinds == ["ORDER_TRADE_UPDATE", "TRADE_LITE", "ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE"]
    stamps = [e["E"] for e in one.events]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    new, _, fill, account = one.events
    assert (new["o"]["x"], new["o"]["X"], new["o"]["i"]) == ("NEW", "NEW", placed["orderId"])
    fill_o = OrderTradeUpdate.model_validate(fill).o
    trade = (await raw.signed("GET", "/fapi/v1/userTrades", {"symbol": "BTCUSDT"}))[1][-1]
    assert (fill_o.x, fill_o.X, fill_o.l, fill_o.z, fill_o.L) == (
        "TRADE",
        "FILLED",
        "0.010",
        "0.010",
        "95234.50",
    )
    assert (fill_o.t, fill_o.n, fill_o.N, fill_o.rp, fill_o.m) == (
        trade["id"],
        trade["commission"],
        "USDT",
        trade["realizedPnl"],
        False,
    )
    update = AccountUpdate.model_validate(account).a
    assert update.m == "ORDER"
    assert [(p.s, p.pa, p.ep, p.ps) for p in update.P] == [("BTCUSDT", "0.010", "95234.5", "BOTH")]
    wallet = (await raw.signed("GET", "/fapi/v2/balance", {}))[1]
    (usdt,) = [b for b in wallet if b["asset"] == "USDT"]
    assert update.B[0].a == "USDT" and update.B[0].wb == usdt["balance"]
    await one.close()
    await two.close()


async def test_stop_fires_through_triggering_with_events(
    sim: Simulator, raw: Raw, session: aiohttp.ClientSession
) -> None:
    key = await listen_key(raw)
    listener = await connect(session, sim, f"/private/ws?listenKey={key}")
    await order(raw, side="BUY", type="MARKET", quantity="0.010")
    status, stop = await algo(
        raw, side="SELL", type="STOP_MARKET", triggerPrice="94000", closePosition="true", clientAlgoId="sl"
    )
    assert status == 200, stop
    await mark(raw, "93900")
    await listener.wait("FINISHED", lambda e: e["e"] == "ALGO_UPDATE" and e["o"]["X"] == "FINISHED")
    algo_events = [AlgoUpdate.model_validate(e).o for e in listener.of("ALGO_UPDATE")]
    assert [a.X for a in algo_events] == ["NEW", "TRIGGERING", "TRIGGERED", "FINISHED"]
    assert {a.aid for a in algo_events} == {stop["algoId"]}
    assert algo_events[0].ai == "" and algo_events[0].ap == "0.00000"
    real = int(algo_events[2].ai)
    assert algo_events[3].ai == str(real) and algo_events[3].aq == "0.010" and algo_events[3].act == "MARKET"
    real_events = [e["o"] for e in listener.of("ORDER_TRADE_UPDATE") if e["o"]["i"] == real]
    assert [(o["x"], o["X"], o["ot"]) for o in real_events] == [
        ("NEW", "NEW", "STOP_MARKET"),
        ("TRADE", "FILLED", "STOP_MARKET"),
    ]
    (last_account,) = listener.of("ACCOUNT_UPDATE")[-1:]
    assert last_account["a"]["P"][0]["pa"] == "0.000"
    status, queried, _ = await raw.signed("GET", "/fapi/v1/algoOrder", {"algoId": stop["algoId"]})
    assert (queried["algoStatus"], queried["actualOrderId"]) == ("FINISHED", str(real))
    await listener.close()


async def test_triggering_hold_answers_minus_2011_then_releases(
    sim: Simulator, raw: Raw, session: aiohttp.ClientSession
) -> None:
    key = await listen_key(raw)
    listener = await connect(session, sim, f"/private/ws/{key}")
    await order(raw, side="BUY", type="MARKET", quantity="0.010")
    _, stop = await algo(
        raw, side="SELL", type="STOP_MARKET", triggerPrice="94000", quantity="0.010", reduceOnly="true"
    )
    sim.set_faults(hold_triggering=True)
    await mark(raw, "93000")
    status, held, _ = await raw.signed("GET", "/fapi/v1/algoOrder", {"algoId": stop["algoId"]})
    assert (status, held["algoStatus"], held["actualOrderId"]) == (200, "TRIGGERING", "")
    status, body, _ = await raw.signed("DELETE", "/fapi/v1/algoOrder", {"algoId": stop["algoId"]})
    assert (status, body["code"]) == (400, -2011)
    sim.set_faults(hold_triggering=False)
    status, done, _ = await raw.signed("GET", "/fapi/v1/algoOrder", {"algoId": stop["algoId"]})
    assert done["algoStatus"] == "FINISHED" and done["actualOrderId"]
    await listener.wait("FINISHED", lambda e: e["e"] == "ALGO_UPDATE" and e["o"]["X"] == "FINISHED")
    assert [e["o"]["X"] for e in listener.of("ALGO_UPDATE")] == ["NEW", "TRIGGERING", "TRIGGERED", "FINISHED"]
    await listener.close()


@pytest.mark.parametrize("sim_config", [SimConfig(rate_limits=False, trigger_delay_ms=300)])
async def test_triggering_is_observable_during_the_trigger_delay(sim: Simulator, raw: Raw) -> None:
    await order(raw, side="BUY", type="MARKET", quantity="0.010")
    _, stop = await algo(raw, side="SELL", type="STOP_MARKET", triggerPrice="94000", closePosition="true")
    seen: list[str] = []

    async def poll() -> None:
        while not seen or seen[-1] != "FINISHED":
            _, body, _ = await raw.signed("GET", "/fapi/v1/algoOrder", {"algoId": stop["algoId"]})
            seen.append(body["algoStatus"])

    poller = asyncio.create_task(poll())
    await wait_for(lambda: "NEW" in seen, 5, "a first poll")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await mark(raw, "93000")  # answers once the trigger completed
    assert loop.time() - started >= 0.3
    _, body, _ = await raw.signed("GET", "/fapi/v1/algoOrder", {"algoId": stop["algoId"]})
    assert body["algoStatus"] == "FINISHED"
    await asyncio.wait_for(poller, 5)
    assert "TRIGGERING" in seen
    assert [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s] == ["NEW", "TRIGGERING", "FINISHED"]


async def test_reduce_only_trigger_without_position_is_rejected(
    sim: Simulator, raw: Raw, session: aiohttp.ClientSession
) -> None:
    key = await listen_key(raw)
    listener = await connect(session, sim, f"/private/ws/{key}")
    _, tp = await algo(
        raw, side="SELL", type="TAKE_PROFIT_MARKET", triggerPrice="96000", quantity="0.010", reduceOnly="true"
    )
    await mark(raw, "96500")
    await listener.wait("REJECTED", lambda e: e["e"] == "ALGO_UPDATE" and e["o"]["X"] == "REJECTED")
    rejected = listener.of("ALGO_UPDATE")[-1]["o"]
    assert (rejected["rm"], rejected["ai"]) == ("Reduce Only reject", "")
    assert not listener.of("ORDER_TRADE_UPDATE")
    _, queried, _ = await raw.signed("GET", "/fapi/v1/algoOrder", {"algoId": tp["algoId"]})
    assert (queried["algoStatus"], queried["actualOrderId"]) == ("REJECTED", "")
    await listener.close()


async def test_no_per_symbol_limit_of_open_conditional_orders_since_2025_12_29(raw: Raw) -> None:
    """Binance removed MAX_NUM_ALGO_ORDERS (10 per symbol) on 2025-12-29: only 200 per account remain."""
    for i in range(12):
        status, body = await algo(
            raw, side="SELL", type="STOP_MARKET", triggerPrice=str(80000 + i), quantity="0.010"
        )
        assert status == 200, body
    status, body, _ = await raw.request("GET", "/fapi/v1/exchangeInfo")
    [btc] = [s for s in body["symbols"] if s["symbol"] == "BTCUSDT"]
    assert "MAX_NUM_ALGO_ORDERS" not in {f["filterType"] for f in btc["filters"]}


async def test_reduce_only_market_beyond_position_fills_the_position(raw: Raw) -> None:
    await order(raw, side="BUY", type="MARKET", quantity="0.010")
    closed = await order(
        raw, side="SELL", type="MARKET", quantity="0.050", reduceOnly="true", newOrderRespType="RESULT"
    )
    assert (closed["status"], closed["origQty"], closed["executedQty"]) == ("FILLED", "0.010", "0.010")


async def test_a_funding_fee_update_lists_only_isolated_positions_and_its_balance_change(
    sim: Simulator, raw: Raw, session: aiohttp.ClientSession
) -> None:
    await raw.signed("POST", "/fapi/v1/marginType", {"symbol": "ETHUSDT", "marginType": "ISOLATED"})
    await order(raw, side="BUY", type="MARKET", quantity="0.010")  # BTCUSDT cross long
    await order(raw, symbol="ETHUSDT", side="SELL", type="MARKET", quantity="1.000")  # isolated short
    listener = await connect(session, sim, f"/private/stream?listenKey={await listen_key(raw)}")
    rows = sim.settle_funding()
    await listener.wait("FUNDING_FEE", lambda e: e["data"]["e"] == "ACCOUNT_UPDATE")
    (update,) = [e["data"] for e in listener.events if e["data"]["e"] == "ACCOUNT_UPDATE"]
    AccountUpdate.model_validate(update)
    paid = sum(r.income for r in rows)  # BTC long pays 95234.5*0.006*0.0001, ETH short receives
    assert update["a"]["m"] == "FUNDING_FEE"
    (balance,) = update["a"]["B"]
    assert Decimal(balance["bc"]) == paid != 0
    # The cross BTCUSDT position is not listed; the isolated ETHUSDT one is.
    assert [(p["s"], p["mt"]) for p in update["a"]["P"]] == [("ETHUSDT", "isolated")]
    # cr: the position's accumulated realized PnL before fees, (96000 - 95234.5) * 0.004 = 3.062.
    sim.set_mark_price("BTCUSDT", "96000")
    await order(raw, side="SELL", type="MARKET", quantity="0.004")
    await listener.wait(
        "the ORDER update", lambda e: e["data"]["e"] == "ACCOUNT_UPDATE" and e["data"]["a"]["m"] == "ORDER"
    )
    (closing,) = [e["data"] for e in listener.events if e["data"]["e"] == "ACCOUNT_UPDATE"][1:]
    assert [(p["pa"], p["cr"]) for p in closing["a"]["P"]] == [("0.006", "3.06200000")]
    # A transfer into the futures wallet: DEPOSIT, bc the amount, no positions.
    wallet = sim.engine.account.wallet["USDT"]
    sim.set_balance("USDT", wallet + 100)
    await listener.wait(
        "the deposit", lambda e: e["data"]["e"] == "ACCOUNT_UPDATE" and e["data"]["a"]["m"] == "DEPOSIT"
    )
    (deposit,) = [e["data"] for e in listener.events if e["data"]["e"] == "ACCOUNT_UPDATE"][2:]
    AccountUpdate.model_validate(deposit)
    assert (deposit["a"]["B"][0]["bc"], deposit["a"]["P"]) == ("100", [])
    await listener.close()


@pytest.mark.serial  # a latency bound (< 1 s for events each delayed 300 ms)
async def test_cancel_and_funding_and_faults(
    sim: Simulator, raw: Raw, session: aiohttp.ClientSession
) -> None:
    key = await listen_key(raw)
    listener = await connect(session, sim, f"/private/ws/{key}")
    rest = await order(raw, side="BUY", type="LIMIT", price="90000", quantity="0.010", timeInForce="GTC")
    await raw.signed("DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": rest["orderId"]})
    await listener.wait("CANCELED", lambda e: e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["X"] == "CANCELED")
    await order(raw, side="BUY", type="MARKET", quantity="0.010")
    sim.settle_funding()
    await listener.wait("FUNDING_FEE", lambda e: e["e"] == "ACCOUNT_UPDATE" and e["a"]["m"] == "FUNDING_FEE")
    # delay: the next event leaves no sooner than the delay
    sim.set_faults(stream_delay_ms=300)
    loop = asyncio.get_running_loop()
    before, start = len(listener.events), loop.time()
    await order(raw, side="SELL", type="MARKET", quantity="0.010")
    await wait_for(lambda: len(listener.events) > before, 5, "a delayed event")
    assert loop.time() - start >= 0.3
    await listener.wait(
        "the closing ACCOUNT_UPDATE",
        lambda e: e["e"] == "ACCOUNT_UPDATE" and e["a"]["m"] == "ORDER" and e["a"]["P"][0]["pa"] == "0.000",
    )
    assert loop.time() - start < 1.0  # each event is delayed, not the queue one after the other
    sim.set_faults(stream_delay_ms=0)
    # drop: every socket closes; the key stays valid and a new socket works
    second = await connect(session, sim, f"/private/ws?listenKey={key}")
    sim.set_faults(actions=["drop_user_streams"])
    await asyncio.wait_for(listener.closed.wait(), 5)
    await asyncio.wait_for(second.closed.wait(), 5)
    third = await connect(session, sim, f"/private/ws/{key}")
    # expire: listenKeyExpired (the socket stays open), then -1125
    sim.set_faults({"actions": ["expire_listen_key"]})
    await third.wait("listenKeyExpired", lambda e: e["e"] == "listenKeyExpired")
    assert [e["e"] for e in third.events] == ["listenKeyExpired"]
    status, body, _ = await raw.request("PUT", "/fapi/v1/listenKey", body=f"listenKey={key}")
    assert (status, body["code"]) == (400, -1125)
    status, body, _ = await raw.request("POST", "/_sim/faults", body='{"actions": ["nope"]}')
    assert (status, body["code"]) == (400, -1130)


async def test_python_binance_futures_user_socket_end_to_end(sim: Simulator, client: AsyncClient) -> None:
    manager = BinanceSocketManager(client)
    manager.FSTREAM_URL = sim.base_url.replace("http", "ws") + "/"
    received: list[dict[str, Any]] = []
    socket = manager.futures_user_socket()
    socket.TIMEOUT = 1  # its read loop polls with this timeout; closing waits for it (default 10 s)
    async with socket:

        async def read() -> None:
            while True:
                received.append(await socket.recv())

        reader = asyncio.create_task(read())
        await wait_for(lambda: len(sim.stream.connections) == 1, 5, "python-binance to connect")
        await client.futures_create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.010")
        await client.futures_create_algo_order(
            symbol="BTCUSDT", side="SELL", type="STOP_MARKET", triggerPrice="94000", closePosition="true"
        )
        sim.set_mark_price("BTCUSDT", Decimal("93900"))
        await wait_for(
            lambda: any(e.get("e") == "ALGO_UPDATE" and e["o"]["X"] == "FINISHED" for e in received),
            5,
            "the stop's FINISHED",
        )
        reader.cancel()
    kinds = {e["e"] for e in received}
    assert {"ORDER_TRADE_UPDATE", "ACCOUNT_UPDATE", "ALGO_UPDATE", "TRADE_LITE"} <= kinds
    for event in received:
        parse(event)
    positions = [e["a"]["P"][0]["pa"] for e in received if e["e"] == "ACCOUNT_UPDATE"]
    assert positions == ["0.010", "0.000"]


async def test_rest_field_names_as_binance_sends_them(raw: Raw) -> None:
    await order(raw, side="BUY", type="MARKET", quantity="0.010")
    for version in (2, 3):
        _, account, _ = await raw.signed("GET", f"/fapi/v{version}/account", {})
        (row,) = [p for p in account["positions"] if p["symbol"] == "BTCUSDT"]
        assert "unrealizedProfit" in row and "unRealizedProfit" not in row
    _, risk, _ = await raw.signed("GET", "/fapi/v2/positionRisk", {"symbol": "BTCUSDT"})
    assert "unRealizedProfit" in risk[0]  # positionRisk keeps Binance's other spelling
    _, trades, _ = await raw.signed("GET", "/fapi/v1/userTrades", {"symbol": "BTCUSDT"})
    assert trades[-1]["marginAsset"] == "USDT"
    _, placed = await algo(raw, side="SELL", type="STOP_MARKET", triggerPrice="94000", closePosition="true")
    _, queried, _ = await raw.signed("GET", "/fapi/v1/algoOrder", {"algoId": placed["algoId"]})
    assert (queried["actualOrderId"], queried["actualPrice"]) == ("", "0.00000")
    assert (queried["tpTriggerPrice"], queried["tpOrderType"]) == ("0.00", "")
    assert "tpTriggerPrice" not in placed  # the placement answer has no TP/SL attachment fields


async def test_engine_driven_from_another_thread_still_publishes(
    sim: Simulator, raw: Raw, session: aiohttp.ClientSession
) -> None:
    key = await listen_key(raw)
    listener = await connect(session, sim, f"/private/ws/{key}")
    await order(raw, side="BUY", type="MARKET", quantity="0.010")
    await algo(raw, side="SELL", type="STOP_MARKET", triggerPrice="94000", closePosition="true")
    await asyncio.to_thread(sim.set_mark_price, "BTCUSDT", "93900")  # publishes from a worker thread
    await listener.wait("FINISHED", lambda e: e["e"] == "ALGO_UPDATE" and e["o"]["X"] == "FINISHED")
    assert [e["o"]["X"] for e in listener.of("ALGO_UPDATE")] == ["NEW", "TRIGGERING", "TRIGGERED", "FINISHED"]
    await listener.close()


async def test_the_reorder_fault_shuffles_event_types_and_keeps_each_type_in_order(
    sim: Simulator, raw: Raw, session: aiohttp.ClientSession
) -> None:
    """Binance orders events within one type only: the seeded fault delivers an ACCOUNT_UPDATE before
    the ORDER_TRADE_UPDATE of its own fill, while each type keeps its own order."""
    key = await listen_key(raw)
    listener = await connect(session, sim, f"/private/ws/{key}")
    sim.set_faults(
        stream_reorder={"seed": 3, "max_delay_ms": 5, "type_delay_ms": {"ORDER_TRADE_UPDATE": 150}}
    )
    await order(raw, side="BUY", type="MARKET", quantity="0.010", newClientOrderId="one")
    await order(raw, side="BUY", type="MARKET", quantity="0.020", newClientOrderId="two")
    await listener.wait(
        "the second fill",
        lambda e: e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["c"] == "two" and e["o"]["X"] == "FILLED",
    )
    kinds = [e["e"] for e in listener.events]
    assert kinds.index("ACCOUNT_UPDATE") < kinds.index("ORDER_TRADE_UPDATE")  # across types: any order
    trades = [(e["o"]["c"], e["o"]["X"]) for e in listener.of("ORDER_TRADE_UPDATE")]
    assert trades == [("one", "NEW"), ("one", "FILLED"), ("two", "NEW"), ("two", "FILLED")]  # within: kept
    amounts = [e["a"]["P"][0]["pa"] for e in listener.of("ACCOUNT_UPDATE")]
    assert amounts == ["0.010", "0.030"]
    assert sim.faults.to_json()["stream_reorder"]["seed"] == 3
    sim.set_faults(stream_reorder=None)
    assert sim.stream.reorder is None
    listener.out_of_order.clear()  # E leaves out of order across types under this fault, by design
    await listener.close()


async def test_an_event_held_back_does_not_hold_back_the_other_types(
    sim: Simulator, raw: Raw, session: aiohttp.ClientSession
) -> None:
    """The fault holds one type only: an event of another type published while an ORDER_TRADE_UPDATE
    is held leaves when it is due, not when the held one is (the pump used to sleep until the head of
    its queue was due, and a later event of a free type waited behind it)."""
    key = await listen_key(raw)
    listener = await connect(session, sim, f"/private/ws/{key}")
    sim.set_faults(
        stream_reorder={"seed": 1, "max_delay_ms": 0, "type_delay_ms": {"ORDER_TRADE_UPDATE": 8000}}
    )
    await order(raw, side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010", price="50000")
    status, body, _ = await raw.signed("POST", "/fapi/v1/leverage", {"symbol": "BTCUSDT", "leverage": 7})
    assert status == 200, body
    await listener.wait(
        "the leverage change while the order's NEW is held", lambda e: e["e"] == "ACCOUNT_CONFIG_UPDATE", 4.0
    )
    assert listener.of("ORDER_TRADE_UPDATE") == []  # still held: 8 s
    sim.set_faults(stream_reorder=None)
    listener.out_of_order.clear()
    await listener.close()


async def test_the_retired_ws_url_opens_and_receives_nothing(
    sim: Simulator, raw: Raw, session: aiohttp.ClientSession
) -> None:
    """Since 2026-04-23 ``/ws/<listenKey>`` is retired: a socket there opens and receives nothing."""
    key = await listen_key(raw)
    retired = Listener(await session.ws_connect(sim.base_url.replace("http", "ws") + f"/ws/{key}"))
    current = await connect(session, sim, f"/private/ws?listenKey={key}")
    await order(raw, side="BUY", type="MARKET", quantity="0.010")
    await current.wait("the fill's ACCOUNT_UPDATE", lambda e: e["e"] == "ACCOUNT_UPDATE")
    assert retired.events == [] and not retired.ws.closed
    await retired.close()
    await current.close()


async def test_the_events_allow_list_and_the_private_stream_envelope(
    sim: Simulator, raw: Raw, session: aiohttp.ClientSession
) -> None:
    """``events=`` is an allow-list (a type left out is never delivered); ``/private/stream`` wraps each
    event in ``{"stream": <listenKey>, "data": <event>}``."""
    key = await listen_key(raw)
    every = await connect(session, sim, f"/private/ws?listenKey={key}")
    only = await connect(session, sim, f"/private/ws?listenKey={key}&events=ACCOUNT_UPDATE/listenKeyExpired")
    wrapped = await connect(session, sim, f"/private/stream?listenKey={key}&events=ORDER_TRADE_UPDATE")
    await order(raw, side="BUY", type="MARKET", quantity="0.010")
    await every.wait("the fill's ACCOUNT_UPDATE", lambda e: e.get("e") == "ACCOUNT_UPDATE")
    await only.wait("the ACCOUNT_UPDATE", lambda e: e.get("e") == "ACCOUNT_UPDATE")
    await wrapped.wait("the fill", lambda e: e.get("data", {}).get("o", {}).get("X") == "FILLED")
    assert {e["e"] for e in every.events} == {"ORDER_TRADE_UPDATE", "TRADE_LITE", "ACCOUNT_UPDATE"}
    assert [e["e"] for e in only.events] == ["ACCOUNT_UPDATE"]
    assert {e["stream"] for e in wrapped.events} == {key}
    assert [e["data"]["o"]["X"] for e in wrapped.events] == ["NEW", "FILLED"]
    assert [e["data"] for e in wrapped.events] == every.of("ORDER_TRADE_UPDATE")
    for listener in (every, only, wrapped):
        await listener.close()


@pytest.mark.parametrize("sim_config", [SimConfig(rate_limits=False, stream_max_connection_s=0.5)])
async def test_a_socket_is_closed_when_its_lifetime_ends(
    sim: Simulator, raw: Raw, session: aiohttp.ClientSession
) -> None:
    """Binance closes a user-data socket after 24 h (here 0.5 s); the key stays valid."""
    key = await listen_key(raw)
    listener = await connect(session, sim, f"/private/ws?listenKey={key}")
    await asyncio.wait_for(listener.closed.wait(), 5)
    again = await connect(session, sim, f"/private/ws?listenKey={key}")
    await order(raw, side="BUY", type="MARKET", quantity="0.010")
    await again.wait("a fill on the new socket", lambda e: e["e"] == "ORDER_TRADE_UPDATE")
