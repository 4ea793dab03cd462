"""A TradingView alert as an intent: the documented alert template mapped to the producers' fields.

The template (the alert's message, sent as JSON by TradingView's webhook)::

    {"secret": "<the source's secret>",
     "intent_id": "tv-{{strategy.order.id}}-{{timenow}}",
     "ticker": "{{ticker}}",
     "action": "{{strategy.order.action}}",
     "contracts": "{{strategy.order.contracts}}",
     "market_position": "{{strategy.market_position}}",
     "time": "{{timenow}}",
     "leverage": 3, "stop_loss_pct": 1.5, "take_profit_pct": 3}

``ticker`` becomes ``symbol`` with TradingView's decorations removed (``BINANCE:BTCUSDT.P`` ->
``BTCUSDT``); ``action`` (``buy``/``sell``) is the side; ``contracts`` the ``quantity`` (unless the
alert gives ``quantity`` or ``position_size_usd``); ``market_position`` ``flat`` makes the alert a
CLOSE (a strategy's exit); ``time`` the ``timestamp``. Every other field is an intent field as the
producers send it (and validated as such). ``secret`` is taken out before anything is published.
"""

from __future__ import annotations

import re
from typing import Any, Final

# TradingView's exchange prefix and the perpetual suffixes its symbols carry.
_PREFIX_RE: Final = re.compile(r"^[A-Z0-9_]+:")
_SUFFIXES: Final = (".P", ".PERP", "PERP")
_TEMPLATE_ONLY: Final = ("ticker", "contracts", "market_position", "time")


def normalise_symbol(raw: Any) -> Any:
    """``BINANCE:BTCUSDT.P`` -> ``BTCUSDT``; anything not a string is left for validation to refuse."""
    if not isinstance(raw, str):
        return raw
    symbol = _PREFIX_RE.sub("", raw.strip().upper())
    for suffix in _SUFFIXES:
        if symbol.endswith(suffix) and len(symbol) > len(suffix):
            return symbol[: -len(suffix)]
    return symbol


def alert_to_payload(alert: dict[str, Any]) -> dict[str, Any]:
    """The intent payload of an alert (the secret already taken out); validation happens after."""
    payload = {k: v for k, v in alert.items() if k not in _TEMPLATE_ONLY}
    if "symbol" not in payload and "ticker" in alert:
        payload["symbol"] = alert["ticker"]
    if "symbol" in payload:
        payload["symbol"] = normalise_symbol(payload["symbol"])
    flat = str(alert.get("market_position", "")).strip().lower() == "flat"
    if flat:
        payload.pop("action", None)
        payload.pop("side", None)
        payload["side"] = "CLOSE"
    elif "contracts" in alert and "quantity" not in payload and "position_size_usd" not in payload:
        payload["quantity"] = alert["contracts"]
    if "time" in alert and "timestamp" not in payload:
        payload["timestamp"] = alert["time"]
    return payload
