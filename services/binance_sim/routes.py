"""The REST routes of the simulated exchange: which engine call serves each Binance path, at what
weight (the WebSocket API runs the same table)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import orjson

from binance_sim import views
from binance_sim.endpoint import Endpoint
from binance_sim.engine import Engine
from binance_sim.market import MarketData
from binance_sim.params import Params
from binance_sim.ratelimit import Limits
from binance_sim.userstream import UserStream

Routes = dict[tuple[str, str], Endpoint]


def build_routes(
    engine: Engine,
    stream: UserStream,
    market: MarketData,
    clock: Callable[[], int],
    income_delay_ms: Callable[[], int],
    limits: Limits,
) -> Routes:
    """``(method, path)`` -> :class:`Endpoint` for every Binance route the simulator serves."""
    e = engine
    info = {k: v for k, v in market.exchange_info.items() if k != "serverTime"}
    info_tail = orjson.dumps(info)[1:]

    def exchange_info(params: Params) -> bytes:
        return b'{"serverTime":%d,' % clock() + info_tail

    def keepalive(params: Params) -> Any:
        """PUT /fapi/v1/listenKey: the ``listenKey`` parameter is optional (the account's key)."""
        return {"listenKey": stream.keepalive(params.opt_str("listenKey") or stream.key)}

    def close_key(params: Params) -> Any:
        """DELETE /fapi/v1/listenKey: answers ``{}`` as Binance does."""
        stream.close(params.opt_str("listenKey") or stream.key)
        return {}

    def order_limits(params: Params) -> Any:
        """GET /fapi/v1/rateLimit/order: the account's order-count limits."""
        return [
            {
                "rateLimitType": "ORDERS",
                "interval": "SECOND",
                "intervalNum": 10,
                "limit": limits.orders_per_10s,
            },
            {
                "rateLimitType": "ORDERS",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": limits.orders_per_minute,
            },
        ]

    routes: Routes = {
        ("GET", "/fapi/v1/ping"): Endpoint(lambda p: b"{}", 1, signed=False),
        ("GET", "/fapi/v1/time"): Endpoint(lambda p: {"serverTime": clock()}, 1, signed=False),
        ("GET", "/fapi/v1/exchangeInfo"): Endpoint(exchange_info, 1, signed=False),
        ("GET", "/fapi/v1/premiumIndex"): Endpoint(e.premium_index, 1, 10, signed=False),
        ("GET", "/fapi/v1/ticker/price"): Endpoint(e.ticker_price, 1, 2, signed=False),
        ("GET", "/fapi/v2/ticker/price"): Endpoint(e.ticker_price, 1, 2, signed=False),
        ("GET", "/fapi/v1/leverageBracket"): Endpoint(e.leverage_bracket, 1),
        ("GET", "/fapi/v1/fundingRate"): Endpoint(e.funding_rate_history, 1, signed=False),
        ("GET", "/fapi/v1/fundingInfo"): Endpoint(e.funding_info, 1, signed=False),
        ("GET", "/fapi/v1/positionSide/dual"): Endpoint(lambda p: e.position_mode(), 30),
        ("POST", "/fapi/v1/positionSide/dual"): Endpoint(e.change_position_mode, 1),
        ("POST", "/fapi/v1/leverage"): Endpoint(e.change_leverage, 1),
        ("POST", "/fapi/v1/marginType"): Endpoint(e.change_margin_type, 1),
        ("POST", "/fapi/v1/order"): Endpoint(e.new_order, 0, is_order=True),
        ("GET", "/fapi/v1/order"): Endpoint(e.query_order, 1),
        ("DELETE", "/fapi/v1/order"): Endpoint(e.cancel_order, 1),
        ("PUT", "/fapi/v1/order"): Endpoint(e.modify_order, 1, is_order=True),
        ("POST", "/fapi/v1/batchOrders"): Endpoint(e.new_orders, 5, is_order=True),
        ("PUT", "/fapi/v1/batchOrders"): Endpoint(e.modify_orders, 5, is_order=True),
        ("POST", "/fapi/v1/countdownCancelAll"): Endpoint(e.countdown_cancel_all, 10),
        ("GET", "/fapi/v1/orderAmendment"): Endpoint(e.order_amendments, 1),
        ("GET", "/fapi/v1/openOrders"): Endpoint(e.list_open_orders, 1, 40),
        ("DELETE", "/fapi/v1/allOpenOrders"): Endpoint(e.cancel_all_open_orders, 1),
        ("GET", "/fapi/v1/accountConfig"): Endpoint(e.account_config, 5),
        ("GET", "/fapi/v1/symbolConfig"): Endpoint(e.symbol_config, 5),
        ("GET", "/fapi/v1/commissionRate"): Endpoint(e.commission_rate, 20),
        ("GET", "/fapi/v1/rateLimit/order"): Endpoint(order_limits, 1),
        ("GET", "/fapi/v1/allOrders"): Endpoint(e.list_all_orders, 5),
        ("POST", "/fapi/v1/algoOrder"): Endpoint(e.new_algo_order, 0, is_order=True),
        ("GET", "/fapi/v1/algoOrder"): Endpoint(e.query_algo_order, 1),
        ("DELETE", "/fapi/v1/algoOrder"): Endpoint(e.cancel_algo_order, 1),
        ("GET", "/fapi/v1/openAlgoOrders"): Endpoint(e.list_open_algo_orders, 1, 40),
        ("DELETE", "/fapi/v1/algoOpenOrders"): Endpoint(e.cancel_all_algo_orders, 1),
        ("GET", "/fapi/v1/allAlgoOrders"): Endpoint(e.list_all_algo_orders, 5),
        ("GET", "/fapi/v1/userTrades"): Endpoint(e.user_trades, 5),
        ("GET", "/fapi/v1/forceOrders"): Endpoint(e.force_orders, 20, 50),
        ("GET", "/fapi/v1/income"): Endpoint(
            lambda p: views.income_history(e.ledger, p, income_delay_ms()), 30
        ),
        ("POST", "/fapi/v1/listenKey"): Endpoint(
            lambda p: {"listenKey": stream.create()}, 1, signed=False, api_key=True
        ),
        ("PUT", "/fapi/v1/listenKey"): Endpoint(keepalive, 1, signed=False, api_key=True),
        ("DELETE", "/fapi/v1/listenKey"): Endpoint(close_key, 1, signed=False, api_key=True),
    }
    for version in (2, 3):
        routes[("GET", f"/fapi/v{version}/positionRisk")] = Endpoint(
            functools.partial(_versioned, e.position_risk, version), 5
        )
        routes[("GET", f"/fapi/v{version}/balance")] = Endpoint(
            functools.partial(_unversioned_params, e.balance, version), 5
        )
        routes[("GET", f"/fapi/v{version}/account")] = Endpoint(
            functools.partial(_unversioned_params, e.account_info, version), 5
        )
    return routes


def _versioned(handler: Callable[[Params, int], Any], version: int, params: Params) -> Any:
    return handler(params, version)


def _unversioned_params(handler: Callable[[int], Any], version: int, params: Params) -> Any:
    return handler(version)
