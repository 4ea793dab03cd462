"""Strict models of the USD-M user data stream events, from Binance's documented field lists.

Sources (developers.binance.com/docs/derivatives/usds-margined-futures/user-data-streams/):
"Event: Order Update", "Event: Balance and Position Update", "Event: Algo Order Update",
"Event: Trade Lite", "Event: User Data Stream Expired", "Event: Margin Call". Unknown keys and wrong
JSON types fail: prices and quantities are strings, ids and times integers, flags booleans.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)


class OrderO(_Strict):
    s: str
    c: str
    S: Literal["BUY", "SELL"]
    o: str
    f: str
    q: str
    p: str
    ap: str
    sp: str
    x: Literal["NEW", "CANCELED", "CALCULATED", "EXPIRED", "TRADE", "AMENDMENT"]
    X: Literal["NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH"]
    i: int
    l: str  # noqa: E741 - Binance's field name
    z: str
    L: str
    N: str
    n: str
    T: int
    t: int
    b: str
    a: str
    m: bool
    R: bool
    wt: str
    ot: str
    ps: Literal["BOTH", "LONG", "SHORT"]
    cp: bool
    rp: str
    pP: bool
    si: int
    ss: int
    V: str
    pm: str
    gtd: int
    er: str  # expiry reason, "0" unless expired for a listed reason


class OrderTradeUpdate(_Strict):
    e: Literal["ORDER_TRADE_UPDATE"]
    E: int
    T: int
    o: OrderO


class Balance(_Strict):
    a: str
    wb: str
    cw: str
    bc: str


class PositionRow(_Strict):
    s: str
    pa: str
    ep: str
    bep: str
    cr: str
    up: str
    mt: Literal["isolated", "cross"]
    iw: str
    ps: Literal["BOTH", "LONG", "SHORT"]


class AccountA(_Strict):
    m: str
    B: list[Balance]
    P: list[PositionRow]


class AccountUpdate(_Strict):
    e: Literal["ACCOUNT_UPDATE"]
    E: int
    T: int
    a: AccountA


class AlgoO(_Strict):
    caid: str
    aid: int
    at: Literal["CONDITIONAL"]
    o: str
    s: str
    S: Literal["BUY", "SELL"]
    ps: Literal["BOTH", "LONG", "SHORT"]
    f: str
    q: str
    X: Literal["NEW", "CANCELED", "TRIGGERING", "TRIGGERED", "FINISHED", "REJECTED", "EXPIRED"]
    ai: str
    ap: str
    aq: str
    act: str
    tp: str
    p: str
    V: str
    wt: str
    pm: str
    cp: bool
    pP: bool
    R: bool
    tt: int
    gtd: int
    rm: str


class AlgoUpdate(_Strict):
    e: Literal["ALGO_UPDATE"]
    T: int
    E: int
    o: AlgoO


class TradeLite(_Strict):
    e: Literal["TRADE_LITE"]
    E: int
    T: int
    s: str
    q: str
    p: str
    m: bool
    c: str
    S: Literal["BUY", "SELL"]
    L: str
    l: str  # noqa: E741
    t: int
    i: int


class ListenKeyExpired(_Strict):
    e: Literal["listenKeyExpired"]
    E: str  # USD-M sends this one as a string
    listen_key: str = Field(alias="listenKey")


class MarginCallRow(_Strict):
    s: str
    ps: Literal["BOTH", "LONG", "SHORT"]
    pa: str
    mt: Literal["CROSSED", "ISOLATED"]
    iw: str
    mp: str
    up: str
    mm: str


class MarginCall(_Strict):
    """ "Event: Margin Call": ``cw`` only with a cross margin call."""

    e: Literal["MARGIN_CALL"]
    E: int
    cw: str | None = None
    p: list[MarginCallRow]


class ConfigAc(_Strict):
    s: str
    l: int  # noqa: E741 - Binance's field name


class AccountConfigUpdate(_Strict):
    """ "Event: Account Configuration Update previous Leverage Update" (the leverage form, ``ac``)."""

    e: Literal["ACCOUNT_CONFIG_UPDATE"]
    E: int
    T: int
    ac: ConfigAc


MODELS: dict[str, type[_Strict]] = {
    "ACCOUNT_CONFIG_UPDATE": AccountConfigUpdate,
    "MARGIN_CALL": MarginCall,
    "ORDER_TRADE_UPDATE": OrderTradeUpdate,
    "ACCOUNT_UPDATE": AccountUpdate,
    "ALGO_UPDATE": AlgoUpdate,
    "TRADE_LITE": TradeLite,
    "listenKeyExpired": ListenKeyExpired,
}


def parse(event: dict[str, Any]) -> _Strict:
    """The strict model of ``event``; raises on an unknown type, an unknown key or a wrong type."""
    return MODELS[event["e"]].model_validate(event)
