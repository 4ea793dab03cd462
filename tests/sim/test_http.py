"""The HTTP layer over real sockets: security, error bodies, headers, rate limits, faults, control API."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import aiohttp
import pytest
from binance import AsyncClient
from binance.exceptions import BinanceAPIException

from binance_sim import Limits, SimConfig, Simulator

pytestmark = pytest.mark.timeout(30)

ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.010"}


async def test_public_endpoints_and_json_content_type(raw) -> None:
    status, body, _ = await raw.request("GET", "/fapi/v1/ping", api_key=None)
    assert (status, body) == (200, {})
    status, body, _ = await raw.request("GET", "/fapi/v1/exchangeInfo", api_key=None)
    assert status == 200 and abs(body["serverTime"] - time.time() * 1000) < 5000
    assert body["rateLimits"][0] == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 2400,
    }
    status, body, _ = await raw.request("GET", "/fapi/v1/premiumIndex", api_key=None)
    assert status == 200 and len(body) == 19
    status, body, _ = await raw.request("GET", "/fapi/v1/ticker/price", query="symbol=ETHUSDT", api_key=None)
    assert body["price"] == "3105.42"


async def test_unknown_paths_are_json_404(raw) -> None:
    status, body, _ = await raw.request("GET", "/fapi/v1/nope")
    assert status == 404 and body["code"] == -5000
    status, body, _ = await raw.request("PATCH", "/fapi/v1/order")
    assert status == 404 and body["msg"] == "Path /fapi/v1/order, Method PATCH is invalid"
    status, _, _ = await raw.request("GET", "/")
    assert status == 404


async def test_conditional_type_on_order_endpoint_is_4120(raw) -> None:
    status, body, _ = await raw.signed(
        "POST", "/fapi/v1/order", {**ORDER, "type": "STOP_MARKET", "stopPrice": "90000"}
    )
    assert status == 400
    assert body == {
        "code": -4120,
        "msg": "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.",
    }


async def test_api_key_checks(raw) -> None:
    status, body, _ = await raw.request("GET", "/fapi/v2/balance", query=raw.signed_query({}), api_key=None)
    assert (status, body["code"]) == (401, -2014)
    status, body, _ = await raw.request(
        "GET", "/fapi/v2/balance", query=raw.signed_query({}), api_key="bad key!"
    )
    assert (status, body["code"]) == (401, -2014)
    status, body, _ = await raw.request(
        "GET", "/fapi/v2/balance", query=raw.signed_query({}), api_key="other-key"
    )
    assert (status, body["code"]) == (401, -2015)


async def test_signature_checks(raw) -> None:
    status, body, _ = await raw.request("GET", "/fapi/v2/balance", query=raw.signed_query({}, "wrong-secret"))
    assert (status, body) == (400, {"code": -1022, "msg": "Signature for this request is not valid."})
    query = f"timestamp={int(time.time() * 1000)}"
    status, body, _ = await raw.request("GET", "/fapi/v2/balance", query=query)
    assert body["code"] == -1102 and "'signature'" in body["msg"]
    status, body, _ = await raw.request("GET", "/fapi/v2/balance", query=f"signature={raw.sign('')}")
    assert body["code"] == -1102 and "'timestamp'" in body["msg"]
    tampered = raw.signed_query({"symbol": "BTCUSDT"}).replace("BTCUSDT", "ETHUSDT")
    status, body, _ = await raw.request("GET", "/fapi/v1/openOrders", query=tampered)
    assert body["code"] == -1022


async def test_total_params_is_query_plus_body(raw) -> None:
    timestamp = int(time.time() * 1000)
    query = "symbol=BTCUSDT&side=BUY&type=MARKET"
    body = f"quantity=0.010&timestamp={timestamp}"
    signature = raw.sign(query + body)
    status, result, _ = await raw.request(
        "POST", "/fapi/v1/order", query=query, body=f"{body}&signature={signature}"
    )
    assert status == 200 and result["status"] == "NEW"


async def test_delete_with_form_body(raw) -> None:
    status, placed, _ = await raw.signed(
        "POST", "/fapi/v1/order", {**ORDER, "type": "LIMIT", "price": "90000", "timeInForce": "GTC"}
    )
    assert status == 200
    status, canceled, _ = await raw.signed(
        "DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": placed["orderId"]}
    )
    assert status == 200 and canceled["status"] == "CANCELED"
    status, again, _ = await raw.signed(
        "DELETE", "/fapi/v1/order", {"symbol": "BTCUSDT", "orderId": placed["orderId"]}
    )
    assert (status, again["code"]) == (400, -2011)


async def test_timestamp_window(raw) -> None:
    now = int(time.time() * 1000)
    status, body, _ = await raw.request(
        "GET", "/fapi/v2/balance", query=raw.signed_query({"timestamp": now + 1500})
    )
    assert body == {"code": -1021, "msg": "Timestamp for this request was 1000ms ahead of the server's time."}
    status, body, _ = await raw.request(
        "GET", "/fapi/v2/balance", query=raw.signed_query({"timestamp": now - 6000})
    )
    assert body == {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}
    query = raw.signed_query({"timestamp": now - 6000, "recvWindow": 10000})
    status, _, _ = await raw.request("GET", "/fapi/v2/balance", query=query)
    assert status == 200
    status, body, _ = await raw.request(
        "GET", "/fapi/v2/balance", query=raw.signed_query({"recvWindow": 60001})
    )
    assert status == 400 and body["code"] == -1130


async def test_clock_skew_fault(sim: Simulator, client: AsyncClient) -> None:
    sim.set_faults(clock_skew_ms=-20_000)
    with pytest.raises(BinanceAPIException) as info:
        await client.futures_account_balance()
    assert info.value.code == -1021
    client.timestamp_offset = (await client.futures_time())["serverTime"] - int(time.time() * 1000)
    assert await client.futures_account_balance()


@pytest.mark.parametrize(
    ("query", "body", "code"),
    [
        ("", "symbol=BTCUSDT&symbol=ETHUSDT", -1101),
        ("", "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=-1", -1100),
        ("", "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1e3", -1100),
        ("", "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=%ff%fe", -1100),
        ("", "side=BUY", -1102),
        ("", "\x00\x01garbage", -1102),
        ("", "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=99999999999999999999999.1", -1100),
        ("", "symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1.1234", -1111),
    ],
)
async def test_malformed_requests_get_binance_errors(raw, query: str, body: str, code: int) -> None:
    timestamp = int(time.time() * 1000)
    signed_body = f"{body}&timestamp={timestamp}" if body else f"timestamp={timestamp}"
    payload = f"{signed_body}&signature={raw.sign(signed_body)}"
    status, result, _ = await raw.request("POST", "/fapi/v1/order", query=query, body=payload)
    assert 400 <= status < 500 and result["code"] == code, result
    status, _, _ = await raw.request("GET", "/fapi/v1/ping")
    assert status == 200


async def test_control_api_over_http(raw) -> None:
    status, placed, _ = await raw.signed("POST", "/fapi/v1/order", {**ORDER, "newOrderRespType": "RESULT"})
    assert placed["status"] == "FILLED"
    status, _, _ = await raw.signed(
        "POST",
        "/fapi/v1/algoOrder",
        {
            "algoType": "CONDITIONAL",
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "STOP_MARKET",
            "triggerPrice": "94000",
            "closePosition": "true",
            "clientAlgoId": "sl",
        },
    )
    assert status == 200
    async with raw.session.post(
        f"{raw.base_url}/_sim/markPrice", json={"symbol": "BTCUSDT", "prices": ["94500", "93000"]}
    ) as r:
        assert r.status == 200 and (await r.json())["markPrice"] == "93000"
    async with raw.session.get(f"{raw.base_url}/_sim/state") as r:
        state = await r.json()
    assert state["positions"] == [] and len(state["trades"]) == 2
    assert state["algoOrders"][0]["algoStatus"] == "FINISHED"
    async with raw.session.post(f"{raw.base_url}/_sim/faults", json={"faults": [{"kind": "nope"}]}) as r:
        assert r.status == 400 and "kind" in (await r.json())["msg"]
    async with raw.session.post(
        f"{raw.base_url}/_sim/markPrice", json={"symbol": "BTCUSDT", "price": "x"}
    ) as r:
        assert r.status == 400
    async with raw.session.post(f"{raw.base_url}/_sim/reset") as r:
        assert r.status == 200
    async with raw.session.get(f"{raw.base_url}/_sim/state") as r:
        assert (await r.json())["trades"] == []


async def _order_count(sim: Simulator) -> int:
    return len(sim.state()["orders"])


async def test_unknown_after_fault_order_exists(sim: Simulator, raw) -> None:
    sim.set_faults(faults=[{"kind": "unknown_after", "method": "POST", "path": "/fapi/v1/order", "count": 1}])
    status, body, _ = await raw.request("GET", "/fapi/v1/ping")
    assert status == 200  # not targeted
    status, body, _ = await raw.signed("POST", "/fapi/v1/order", {**ORDER, "newClientOrderId": "u1"})
    assert status == 503 and body["msg"] == "Unknown error, please check your request or try again later."
    assert await _order_count(sim) == 1
    status, found, _ = await raw.signed(
        "GET", "/fapi/v1/order", {"symbol": "BTCUSDT", "origClientOrderId": "u1"}
    )
    assert status == 200 and found["status"] == "FILLED"
    status, _, _ = await raw.signed("POST", "/fapi/v1/order", ORDER)
    assert status == 200  # count was 1


async def test_timeout_after_and_unavailable_before(sim: Simulator, raw) -> None:
    sim.set_faults(faults=[{"kind": "timeout_after", "path": "/fapi/v1/order", "count": 1}])
    status, body, _ = await raw.signed("POST", "/fapi/v1/order", ORDER)
    assert (status, body["code"]) == (408, -1007)
    assert await _order_count(sim) == 1
    sim.set_faults(faults=[{"kind": "unavailable", "path": "/fapi/v1/order", "count": 1}])
    status, body, _ = await raw.signed("POST", "/fapi/v1/order", ORDER)
    assert (status, body["msg"]) == (503, "Service Unavailable.")
    assert await _order_count(sim) == 1


async def test_unreadable_answer_faults_after_processing(sim: Simulator, raw) -> None:
    """garbled_after: a 200 without the order's fields; truncated_after: the answer cut off."""
    for kind in ("garbled_after", "truncated_after"):
        sim.set_faults(mode="append", faults=[{"kind": kind, "path": "/fapi/v1/order", "count": 1}])
    status, body, _ = await raw.signed("POST", "/fapi/v1/order", {**ORDER, "newClientOrderId": "g1"})
    assert status == 200 and "orderId" not in body and body["msg"] == "garbled"
    url = f"{sim.base_url}/fapi/v1/order?{raw.signed_query({**ORDER, 'newClientOrderId': 'g2'})}"
    async with raw.session.post(url, headers={"X-MBX-APIKEY": "quantum-sim-key"}) as response:
        cut = await response.read()
    assert response.status == 200 and cut.startswith(b'{"orderId"') and not cut.endswith(b"}")
    assert [o["clientOrderId"] for o in sim.state()["orders"]] == ["g1", "g2"]  # both processed


@pytest.mark.parametrize(("kind", "orders_after"), [("drop_before", 0), ("drop_after", 1)])
async def test_dropped_connections(sim: Simulator, raw, kind: str, orders_after: int) -> None:
    sim.set_faults(faults=[{"kind": kind, "method": "POST", "path": "/fapi/v1/order", "count": 1}])
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await raw.signed("POST", "/fapi/v1/order", ORDER)
    assert await _order_count(sim) == orders_after
    status, _, _ = await raw.signed("POST", "/fapi/v1/order", ORDER)
    assert status == 200


async def test_forced_algo_and_margin_rejections(sim: Simulator, raw) -> None:
    sim.set_faults(
        faults=[{"kind": "would_trigger", "count": 1}, {"kind": "insufficient_margin", "count": 1}]
    )
    algo = {
        "algoType": "CONDITIONAL",
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "STOP_MARKET",
        "triggerPrice": "90000",
        "quantity": "0.010",
    }
    status, body, _ = await raw.signed("POST", "/fapi/v1/algoOrder", algo)
    assert status == 400 and body == {"code": -2021, "msg": "Order would immediately trigger."}
    status, body, _ = await raw.signed("POST", "/fapi/v1/order", ORDER)
    assert status == 400 and body == {"code": -2019, "msg": "Margin is insufficient."}
    assert sim.state()["orders"] == [] and sim.state()["algoOrders"] == []
    assert (await raw.signed("POST", "/fapi/v1/algoOrder", algo))[0] == 200
    assert (await raw.signed("POST", "/fapi/v1/order", ORDER))[0] == 200


@pytest.mark.serial  # a latency bound (< 0.2 s without the fault)
async def test_latency_fault(sim: Simulator, raw) -> None:
    sim.set_faults(faults=[{"kind": "latency", "ms": 200, "path": "/fapi/v1/time", "count": 1}])
    started = time.monotonic()
    await raw.request("GET", "/fapi/v1/time")
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    await raw.request("GET", "/fapi/v1/time")
    assert time.monotonic() - started < 0.2


async def test_concurrent_requests_keep_state_consistent(sim: Simulator, raw) -> None:
    results = await asyncio.gather(*(raw.signed("POST", "/fapi/v1/order", ORDER) for _ in range(50)))
    assert all(status == 200 for status, _, _ in results)
    assert Decimal(sim.state()["positions"][0]["positionAmt"]) == Decimal("0.500")


class TestRateLimits:
    @pytest.fixture
    def sim_config(self) -> SimConfig:
        return SimConfig(
            rate_limits=True,
            limits=Limits(weight_per_minute=40, orders_per_10s=3, ban_after_429s=3, ban_s=60),
        )

    async def test_weight_and_order_headers(self, raw) -> None:
        _, _, headers = await raw.request("GET", "/fapi/v1/time")
        first = int(headers["X-MBX-USED-WEIGHT-1M"])
        _, _, headers = await raw.signed("GET", "/fapi/v2/positionRisk", {})
        assert int(headers["X-MBX-USED-WEIGHT-1M"]) in (first + 5, 5)  # +5, or a new minute began
        assert "X-MBX-ORDER-COUNT-10S" not in headers
        _, _, headers = await raw.signed("POST", "/fapi/v1/order", ORDER)
        assert int(headers["X-MBX-ORDER-COUNT-10S"]) >= 1 and int(headers["X-MBX-ORDER-COUNT-1M"]) >= 1

    async def test_order_count_limit(self, raw) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status, body, headers = await raw.signed("POST", "/fapi/v1/order", ORDER)
            if status == 429:
                break
        assert status == 429 and body["code"] == -1015 and int(headers["Retry-After"]) >= 1

    async def test_429_then_418_ban(self, raw) -> None:
        deadline = time.monotonic() + 10
        statuses: list[int] = []
        while time.monotonic() < deadline and 418 not in statuses:
            status, body, headers = await raw.request("GET", "/fapi/v1/premiumIndex")  # weight 10
            statuses.append(status)
            if status == 429:
                assert body["code"] == -1003 and "Retry-After" in headers
        assert 429 in statuses and statuses[-1] == 418
        status, body, headers = await raw.request("GET", "/fapi/v1/ping")
        assert status == 418 and body["code"] == -1003 and 0 < int(headers["Retry-After"]) <= 60

    async def test_switchable_off(self, sim: Simulator, raw) -> None:
        sim.set_rate_limits(False)
        weights = []
        for _ in range(10):
            status, _, headers = await raw.request("GET", "/fapi/v1/premiumIndex")
            assert status == 200
            weights.append(int(headers["X-MBX-USED-WEIGHT-1M"]))
        assert max(weights) > 40  # still counted for the headers, past the limit, never refused
