"""Strict models of the simulator's REST answers, from the field lists of Binance's USD-M REST docs.

Sources (developers.binance.com/docs/derivatives/usds-margined-futures/trade/rest-api/): "New Order",
"Query Order", "All Orders", "User's Force Orders", "Account Trade List". Unknown keys, missing keys
and wrong JSON types fail: prices and quantities are strings, ids and times integers, flags booleans.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Side = Literal["BUY", "SELL"]
PositionSide = Literal["BOTH", "LONG", "SHORT"]
Status = Literal["NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH"]
TimeInForce = Literal["GTC", "IOC", "FOK", "GTX", "GTD"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _OrderBase(_Strict):
    orderId: int
    symbol: str
    status: Status
    clientOrderId: str
    price: str
    avgPrice: str
    origQty: str
    executedQty: str
    cumQuote: str
    timeInForce: TimeInForce
    type: Literal["LIMIT", "MARKET"]
    reduceOnly: bool
    closePosition: bool
    side: Side
    positionSide: PositionSide
    stopPrice: str
    workingType: Literal["MARK_PRICE", "CONTRACT_PRICE"]
    origType: str
    updateTime: int


class QueriedOrder(_OrderBase):
    """GET /fapi/v1/order, openOrders, allOrders."""

    priceProtect: bool
    priceMatch: str
    selfTradePreventionMode: str
    goodTillDate: int
    time: int


class PlacedOrder(_OrderBase):
    """POST /fapi/v1/order and DELETE /fapi/v1/order (``cumQty``, no ``time``)."""

    cumQty: str
    priceProtect: bool
    priceMatch: str
    selfTradePreventionMode: str
    goodTillDate: int


class ForceOrder(_OrderBase):
    """GET /fapi/v1/forceOrders: the order fields of its example, and ``time``."""

    time: int


class UserTrade(_Strict):
    """GET /fapi/v1/userTrades."""

    buyer: bool
    commission: str
    commissionAsset: str
    id: int
    maker: bool
    orderId: int
    price: str
    qty: str
    quoteQty: str
    realizedPnl: str
    side: Side
    positionSide: PositionSide
    symbol: str
    time: int
    marginAsset: str


def check(model: type[_Strict], body: Any) -> Any:
    """``body`` (an object or a list of them) validated strictly against ``model``; returns ``body``."""
    for row in body if isinstance(body, list) else [body]:
        model.model_validate(row)
    return body


class AlgoOrderQueried(_Strict):
    """GET /fapi/v1/algoOrder, openAlgoOrders, allAlgoOrders ("Query Algo Order")."""

    algoId: int
    clientAlgoId: str
    algoType: Literal["CONDITIONAL"]
    orderType: str
    symbol: str
    side: Side
    positionSide: PositionSide
    timeInForce: TimeInForce
    quantity: str
    algoStatus: Literal["NEW", "CANCELED", "TRIGGERING", "TRIGGERED", "FINISHED", "REJECTED", "EXPIRED"]
    actualOrderId: str
    actualPrice: str
    triggerPrice: str
    price: str
    icebergQuantity: None
    tpTriggerPrice: str
    tpPrice: str
    slTriggerPrice: str
    slPrice: str
    tpOrderType: str
    selfTradePreventionMode: str
    workingType: Literal["MARK_PRICE", "CONTRACT_PRICE"]
    priceMatch: str
    closePosition: bool
    priceProtect: bool
    reduceOnly: bool
    activatePrice: str
    callbackRate: str
    createTime: int
    updateTime: int
    triggerTime: int
    goodTillDate: int


class PositionV3(_Strict):
    """GET /fapi/v3/positionRisk ("Position Information V3")."""

    symbol: str
    positionSide: PositionSide
    positionAmt: str
    entryPrice: str
    breakEvenPrice: str
    markPrice: str
    unRealizedProfit: str
    liquidationPrice: str
    isolatedMargin: str
    notional: str
    marginAsset: str
    isolatedWallet: str
    initialMargin: str
    maintMargin: str
    positionInitialMargin: str
    openOrderInitialMargin: str
    adl: int
    bidNotional: str
    askNotional: str
    updateTime: int


class BalanceV3(_Strict):
    """GET /fapi/v3/balance ("Futures Account Balance V3")."""

    accountAlias: str
    asset: str
    balance: str
    crossWalletBalance: str
    crossUnPnl: str
    availableBalance: str
    maxWithdrawAmount: str
    marginAvailable: bool
    updateTime: int


class FundingInfo(_Strict):
    """GET /fapi/v1/fundingInfo ("Get Funding Rate Info")."""

    symbol: str
    adjustedFundingRateCap: str
    adjustedFundingRateFloor: str
    fundingIntervalHours: int
    disclaimer: bool


class PremiumIndex(_Strict):
    """GET /fapi/v1/premiumIndex ("Mark Price")."""

    symbol: str
    markPrice: str
    indexPrice: str
    estimatedSettlePrice: str
    lastFundingRate: str
    interestRate: str
    nextFundingTime: int
    time: int
