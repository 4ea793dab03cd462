"""User data stream messages as Binance documents them (USD-M "Event: ..." pages), for the parsers."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

# "Event: Order Update" example (values as documented), here a fill (x=TRADE).
ORDER_TRADE_UPDATE: dict[str, Any] = {
    "e": "ORDER_TRADE_UPDATE",
    "E": 1568879465651,
    "T": 1568879465650,
    "o": {
        "s": "BTCUSDT",
        "c": "TEST",
        "S": "SELL",
        "o": "TRAILING_STOP_MARKET",
        "f": "GTC",
        "q": "0.001",
        "p": "0",
        "ap": "0",
        "sp": "7103.04",
        "x": "NEW",
        "X": "NEW",
        "i": 8886774,
        "l": "0",
        "z": "0",
        "L": "0",
        "N": "USDT",
        "n": "0",
        "T": 1568879465650,
        "t": 0,
        "b": "0",
        "a": "9.91",
        "m": False,
        "R": False,
        "wt": "CONTRACT_PRICE",
        "ot": "TRAILING_STOP_MARKET",
        "ps": "LONG",
        "cp": False,
        "AP": "7476.89",
        "cr": "5.0",
        "pP": False,
        "si": 0,
        "ss": 0,
        "rp": "0",
        "V": "EXPIRE_TAKER",
        "pm": "OPPONENT",
        "gtd": 0,
    },
}

# "Event: Balance and Position Update" example.
ACCOUNT_UPDATE: dict[str, Any] = {
    "e": "ACCOUNT_UPDATE",
    "E": 1564745798939,
    "T": 1564745798938,
    "a": {
        "m": "ORDER",
        "B": [
            {"a": "USDT", "wb": "122624.12345678", "cw": "100.12345678", "bc": "50.12345678"},
            {"a": "BUSD", "wb": "1.00000000", "cw": "0.00000000", "bc": "-49.12345678"},
        ],
        "P": [
            {
                "s": "BTCUSDT",
                "pa": "0",
                "ep": "0.00000",
                "bep": "0",
                "cr": "200",
                "up": "0",
                "mt": "isolated",
                "iw": "0.00000000",
                "ps": "BOTH",
            },
            {
                "s": "BTCUSDT",
                "pa": "20",
                "ep": "6563.66500",
                "bep": "6563.6",
                "cr": "0",
                "up": "2850.21200000",
                "mt": "isolated",
                "iw": "13200.70726908",
                "ps": "LONG",
            },
            {
                "s": "BTCUSDT",
                "pa": "-10",
                "ep": "6563.86000",
                "bep": "6563.6",
                "cr": "-45.04000000",
                "up": "-1423.15600000",
                "mt": "isolated",
                "iw": "6570.42511771",
                "ps": "SHORT",
            },
        ],
    },
}

# "Event: Algo Order Update" example.
ALGO_UPDATE: dict[str, Any] = {
    "e": "ALGO_UPDATE",
    "T": 1750515742297,
    "E": 1750515742303,
    "o": {
        "caid": "Q5xaq5EGKgXXa0fD7fs0Ip",
        "aid": 2148719,
        "at": "CONDITIONAL",
        "o": "TAKE_PROFIT",
        "s": "BNBUSDT",
        "S": "SELL",
        "ps": "BOTH",
        "f": "GTC",
        "q": "0.01",
        "X": "CANCELED",
        "ai": "",
        "ap": "0.00000",
        "aq": "0.00000",
        "act": "0",
        "tp": "750",
        "p": "750",
        "V": "EXPIRE_MAKER",
        "wt": "CONTRACT_PRICE",
        "pm": "NONE",
        "cp": False,
        "pP": False,
        "R": False,
        "tt": 0,
        "gtd": 0,
        "rm": "Reduce Only reject",
    },
}

LISTEN_KEY_EXPIRED: dict[str, Any] = {
    "e": "listenKeyExpired",
    "E": "1736996475556",
    "listenKey": "WsCMN0a4KHUPTQuX6IUnqEZfB1inxmv1qR4kbf1LuEjur5VdbzqvyxqG9TSjVVxv",
}


def fill_message(
    *,
    symbol: str = "BTCUSDT",
    client_order_id: str = "web_1",
    side: str = "BUY",
    order_id: int = 1001,
    trade_id: int = 1,
    qty: str = "0.010",
    price: str = "60000",
    cum_qty: str | None = None,
    status: str = "FILLED",
    commission: str = "0.24",
    realized: str = "0",
    original_type: str = "MARKET",
    reduce_only: bool = False,
    time_ms: int = 1_700_000_000_000,
) -> dict[str, Any]:
    """An ORDER_TRADE_UPDATE fill in the documented shape."""
    msg = deepcopy(ORDER_TRADE_UPDATE)
    msg["E"] = time_ms + 1
    msg["T"] = time_ms
    msg["o"].update(
        {
            "s": symbol,
            "c": client_order_id,
            "S": side,
            "o": original_type,
            "ot": original_type,
            "q": qty,
            "ap": price,
            "sp": "0",
            "x": "TRADE",
            "X": status,
            "i": order_id,
            "l": qty,
            "z": cum_qty or qty,
            "L": price,
            "n": commission,
            "N": "USDT",
            "T": time_ms,
            "t": trade_id,
            "R": reduce_only,
            "ps": "BOTH",
            "rp": realized,
        }
    )
    return msg


def algo_message(
    *,
    client_algo_id: str,
    status: str = "NEW",
    symbol: str = "BTCUSDT",
    side: str = "SELL",
    order_type: str = "STOP_MARKET",
    qty: str = "0.010",
    trigger: str = "58000",
    algo_id: int = 7,
    executed: str = "0",
    actual_order_id: str = "",
    close_position: bool = False,
    time_ms: int = 1_700_000_000_000,
) -> dict[str, Any]:
    """An ALGO_UPDATE in the documented shape."""
    msg = deepcopy(ALGO_UPDATE)
    msg["E"] = time_ms
    msg["T"] = time_ms
    msg["o"].update(
        {
            "caid": client_algo_id,
            "aid": algo_id,
            "o": order_type,
            "s": symbol,
            "S": side,
            "q": qty,
            "X": status,
            "ai": actual_order_id,
            "aq": executed,
            "tp": trigger,
            "cp": close_position,
            "R": not close_position,
            "rm": "",
        }
    )
    return msg
