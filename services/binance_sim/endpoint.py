"""One Binance route: its handler, IP weight, and how it is authenticated (REST and WebSocket API)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from binance_sim.params import Params

Handler = Callable[[Params], Any]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One Binance route: its handler, IP weight (with / without ``symbol``), and whether it is signed."""

    handler: Handler
    weight: int
    weight_without_symbol: int | None = None
    signed: bool = True
    is_order: bool = False
    api_key: bool = False  # USER_STREAM: X-MBX-APIKEY checked, no signature

    def weight_of(self, params: Params) -> int:
        """Binance's IP weight for this request."""
        if self.weight_without_symbol is not None and not params.has("symbol"):
            return self.weight_without_symbol
        return self.weight
