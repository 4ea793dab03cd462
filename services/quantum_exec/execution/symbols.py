"""Leverage and margin type per symbol, set on the exchange only where they differ from what is
known to be set there (learned at start from the positions, kept after each change)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from quantum_exec.execution.ports import Gateway


@dataclass(slots=True)
class _SymbolState:
    """What we know to be set on the exchange for a symbol (None: unknown)."""

    leverage: int | None = None
    margin_type: str | None = None


class SymbolConfig:
    """The known leverage and margin type of each symbol, and the calls that change them."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._state: dict[str, _SymbolState] = {}

    def learn(self, symbol: str, leverage: int | None, margin_type: str | None) -> None:
        self._state[symbol] = _SymbolState(leverage, margin_type)

    async def configure(self, symbol: str, leverage: int, margin_type: str) -> None:
        """Set margin type and leverage only where they differ from what is known to be set."""
        state = self._state.setdefault(symbol, _SymbolState())
        calls: list[Awaitable[Any]] = []
        if state.margin_type != margin_type:
            calls.append(self._gateway.set_margin_type(symbol, margin_type))
        if state.leverage != leverage:
            calls.append(self._gateway.set_leverage(symbol, leverage))
        if not calls:
            return
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            # What is set is unknown now; ask again next time.
            self._state[symbol] = _SymbolState()
            raise failures[0]
        state.margin_type = margin_type
        state.leverage = leverage
