"""The USD-M futures endpoints the service calls (weight and order cost), and each environment's roots."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from quantum_exec.core.settings import ExchangeEnv, Settings


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One REST endpoint: how to call it and what it costs against the limits."""

    method: str
    path: str
    version: int = 1
    signed: bool = True
    weight: int = 1
    orders: int = 0
    mutates: bool = False

    @property
    def fenced(self) -> bool:
        """Changes state on the exchange (POST, PUT, DELETE): sent only by the intent's owner."""
        return self.method != "get"


EP_TIME = Endpoint("get", "time", signed=False)
EP_EXCHANGE_INFO = Endpoint("get", "exchangeInfo", signed=False)
EP_MARK_PRICE = Endpoint("get", "premiumIndex", signed=False)
EP_LEVERAGE_BRACKET = Endpoint("get", "leverageBracket")
EP_POSITION_MODE = Endpoint("get", "positionSide/dual", weight=30)
EP_SET_LEVERAGE = Endpoint("post", "leverage", mutates=True)
EP_SET_MARGIN = Endpoint("post", "marginType", mutates=True)
EP_NEW_ORDER = Endpoint("post", "order", weight=0, orders=1, mutates=True)
EP_GET_ORDER = Endpoint("get", "order")
EP_CANCEL_ORDER = Endpoint("delete", "order", mutates=True)
EP_NEW_ALGO = Endpoint("post", "algoOrder", weight=0, orders=1, mutates=True)
EP_GET_ALGO = Endpoint("get", "algoOrder")
EP_CANCEL_ALGO = Endpoint("delete", "algoOrder", mutates=True)
EP_CANCEL_ALL_ALGO = Endpoint("delete", "algoOpenOrders", mutates=True)
EP_OPEN_ALGO = Endpoint("get", "openAlgoOrders")
EP_OPEN_ORDERS = Endpoint("get", "openOrders")
EP_INCOME = Endpoint("get", "income", weight=30)
EP_USER_TRADES = Endpoint("get", "userTrades", weight=5)
EP_COMMISSION_RATE = Endpoint("get", "commissionRate", weight=20)
EP_POSITION_RISK = Endpoint("get", "positionRisk", version=2, weight=5)
EP_BALANCE = Endpoint("get", "balance", version=2, weight=5)
# The user data stream's key: API key header, no signature (weight 1).
EP_LISTEN_KEY_NEW = Endpoint("post", "listenKey", signed=False)
EP_LISTEN_KEY_KEEP = Endpoint("put", "listenKey", signed=False)
EP_LISTEN_KEY_CLOSE = Endpoint("delete", "listenKey", signed=False)


REST_ROOTS: Mapping[ExchangeEnv, str] = {
    ExchangeEnv.LIVE: "https://fapi.binance.com",
    ExchangeEnv.TESTNET: "https://testnet.binancefuture.com",
    ExchangeEnv.DEMO: "https://demo-fapi.binance.com",
}


STREAM_ROOTS: Mapping[ExchangeEnv, str] = {
    ExchangeEnv.LIVE: "wss://fstream.binance.com",
    ExchangeEnv.TESTNET: "wss://fstream.binancefuture.com",
    ExchangeEnv.DEMO: "wss://fstream.binancefuture.com",
}


# Binance's WebSocket API (orders over one socket), per environment.
WS_API_URLS: Mapping[ExchangeEnv, str] = {
    ExchangeEnv.LIVE: "wss://ws-fapi.binance.com/ws-fapi/v1",
    ExchangeEnv.TESTNET: "wss://testnet.binancefuture.com/ws-fapi/v1",
    ExchangeEnv.DEMO: "wss://testnet.binancefuture.com/ws-fapi/v1",
}
# The REST routes the WebSocket API also serves, by its method name.
WS_API_METHODS: Mapping[Endpoint, str] = {
    EP_NEW_ORDER: "order.place",
    EP_GET_ORDER: "order.status",
    EP_CANCEL_ORDER: "order.cancel",
    EP_NEW_ALGO: "algoOrder.place",
    EP_CANCEL_ALGO: "algoOrder.cancel",
}


def ws_api_url(settings: Settings) -> str:
    """The WebSocket API URL: ``QUANTUM_BINANCE_WS_API_URL``, else the environment's (the simulator
    serves it on its own host and port)."""
    if settings.binance_ws_api_url:
        return settings.binance_ws_api_url
    if settings.exchange is ExchangeEnv.SIM:
        root = rest_root(settings).replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        return root.rstrip("/") + "/ws-fapi/v1"
    return WS_API_URLS[settings.exchange]


def stream_root(settings: Settings) -> str:
    """The user data stream root: ``QUANTUM_BINANCE_STREAM_URL``, else the environment's (the
    simulator serves it on its own host and port)."""
    if settings.binance_stream_url:
        return settings.binance_stream_url
    if settings.exchange is ExchangeEnv.SIM:
        return rest_root(settings).replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    return STREAM_ROOTS[settings.exchange]


def rest_root(settings: Settings) -> str:
    """The REST root (without ``/fapi``) for the configured environment."""
    if settings.binance_base_url:
        return settings.binance_base_url
    if settings.exchange is ExchangeEnv.SIM:
        raise ValueError("sim environment without QUANTUM_BINANCE_BASE_URL needs the embedded simulator")
    return REST_ROOTS[settings.exchange]
