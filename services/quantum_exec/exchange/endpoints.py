"""The USD-M futures REST endpoints the service calls, with their weight and order cost."""

from __future__ import annotations

from dataclasses import dataclass


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


EP_TIME = Endpoint("get", "time", signed=False)
EP_EXCHANGE_INFO = Endpoint("get", "exchangeInfo", signed=False)
EP_MARK_PRICE = Endpoint("get", "premiumIndex", signed=False)
EP_LEVERAGE_BRACKET = Endpoint("get", "leverageBracket")
EP_POSITION_MODE = Endpoint("get", "positionSide/dual", weight=30)
EP_SET_LEVERAGE = Endpoint("post", "leverage", mutates=True)
EP_SET_MARGIN = Endpoint("post", "marginType", mutates=True)
EP_NEW_ORDER = Endpoint("post", "order", weight=0, orders=1, mutates=True)
EP_GET_ORDER = Endpoint("get", "order")
EP_NEW_ALGO = Endpoint("post", "algoOrder", weight=0, orders=1, mutates=True)
EP_GET_ALGO = Endpoint("get", "algoOrder")
EP_CANCEL_ALGO = Endpoint("delete", "algoOrder", mutates=True)
EP_CANCEL_ALL_ALGO = Endpoint("delete", "algoOpenOrders", mutates=True)
EP_OPEN_ALGO = Endpoint("get", "openAlgoOrders")
EP_USER_TRADES = Endpoint("get", "userTrades", weight=5)
EP_POSITION_RISK = Endpoint("get", "positionRisk", version=2, weight=5)
# The user data stream's key: API key header, no signature (weight 1).
EP_LISTEN_KEY_NEW = Endpoint("post", "listenKey", signed=False)
EP_LISTEN_KEY_KEEP = Endpoint("put", "listenKey", signed=False)
EP_LISTEN_KEY_CLOSE = Endpoint("delete", "listenKey", signed=False)
