"""The read API's query parameters, checked: a bad one is named in a :class:`QueryError` (a 400)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from quantum_exec.ledger.trades import Trade

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 1000
_SYMBOL: Final = re.compile(r"[A-Z0-9]{2,20}")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_TRADE_PARAMS: Final = frozenset({"symbol", "model", "since", "until", "limit"})
_SUMMARY_PARAMS: Final = _TRADE_PARAMS - {"limit"}


class QueryError(ValueError):
    """A query parameter that cannot be used; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message

    def to_json(self) -> dict[str, Any]:
        return {"error": {"parameter": self.parameter, "message": self.message}}


@dataclass(frozen=True, slots=True)
class TradeQuery:
    """Which trades: ``since``/``until`` apply to ``closed_at`` (``opened_at`` of open trades)."""

    symbol: str | None = None
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT

    def matches(self, trade: Trade) -> bool:
        moment = trade.closed_at or trade.opened_at
        return (
            (self.symbol is None or trade.symbol == self.symbol)
            and (self.model is None or trade.model == self.model)
            and (self.since is None or moment >= self.since)
            and (self.until is None or moment <= self.until)
        )


def _moment(name: str, raw: str) -> datetime:
    text = raw.strip()
    if text.isdigit():
        return _EPOCH + timedelta(milliseconds=int(text))
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(
            name,
            f"{name}={raw!r} is neither an ISO-8601 date/time (2026-11-28T22:00:00Z) nor epoch ms",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _parse(params: Mapping[str, str], allowed: frozenset[str]) -> TradeQuery:
    for name in params:
        if name not in allowed:
            raise QueryError(name, f"unknown parameter {name!r}; allowed: {', '.join(sorted(allowed))}")
    symbol = params.get("symbol")
    if symbol is not None:
        symbol = symbol.strip().upper()
        if not _SYMBOL.fullmatch(symbol):
            raise QueryError("symbol", f"symbol={params['symbol']!r} is not a symbol such as BTCUSDT")
    model = params.get("model") or None
    since = _moment("since", params["since"]) if params.get("since") else None
    until = _moment("until", params["until"]) if params.get("until") else None
    if since is not None and until is not None and since > until:
        raise QueryError("since", f"since={params['since']!r} is after until={params['until']!r}")
    limit = DEFAULT_LIMIT
    if "limit" in params:
        raw = params["limit"].strip()
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise QueryError(
                "limit", f"limit={params['limit']!r} must be a whole number from 1 to {MAX_LIMIT}"
            )
        limit = int(raw)
    return TradeQuery(symbol=symbol, model=model, since=since, until=until, limit=limit)


def parse_trade_query(params: Mapping[str, str]) -> TradeQuery:
    """``GET /api/trades`` parameters: symbol, model, since, until, limit (1-1000, default 100)."""
    return _parse(params, _TRADE_PARAMS)


def parse_summary_query(params: Mapping[str, str]) -> TradeQuery:
    """``GET /api/trades/summary`` parameters: symbol, model, since, until."""
    return _parse(params, _SUMMARY_PARAMS)
