"""Funding of perpetual positions: the schedule and the fee (the engine books it; the server runs the timer).

Binance ("Introduction to Binance Futures Funding Rates"; "Funding Fee" in the futures FAQ): at each
funding time a position pays or receives ``Funding Amount = Nominal Value of Positions × Funding
Rate``, the nominal value being ``markPrice × positionAmt``; "when the funding rate is positive,
longs pay shorts", negative rates the other way round. Payments happen every 8 hours (00:00, 08:00
and 16:00 UTC) on most perpetuals; only positions open at that moment pay or receive. The flow is
booked in the wallet, as a FUNDING_FEE row of ``GET /fapi/v1/income`` and in an ACCOUNT_UPDATE whose
reason is FUNDING_FEE. ``GET /fapi/v1/premiumIndex`` shows the rate as ``lastFundingRate`` and the
next settlement as ``nextFundingTime``; delivery contracts have no funding ("" and 0 there).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from binance_sim.market import SymbolSpec

DEFAULT_FUNDING_RATE: Final = Decimal("0.0001")
EIGHT_HOURS_MS: Final = 8 * 3_600_000
_MONEY: Final = Decimal("0.00000001")


@dataclass(frozen=True, slots=True)
class FundingConfig:
    """``interval_ms``: time between settlements (aligned to the epoch, so 8 h gives 00/08/16 UTC).
    ``auto``: the server settles by itself on that schedule (off: only ``POST /_sim/funding`` does).
    ``default_rate``: the rate of symbols the market state gives none."""

    interval_ms: int = EIGHT_HOURS_MS
    auto: bool = False
    default_rate: Decimal = DEFAULT_FUNDING_RATE


def is_perpetual(spec: SymbolSpec) -> bool:
    """Only perpetual contracts fund (PERPETUAL, TRADIFI_PERPETUAL; not CURRENT_QUARTER etc.)."""
    return spec.contract_type.endswith("PERPETUAL")


def next_funding_time(now_ms: int, interval_ms: int) -> int:
    """The first settlement strictly after ``now_ms``."""
    return (now_ms // interval_ms + 1) * interval_ms


def funding_fee(mark: Decimal, position_amt: Decimal, rate: Decimal) -> Decimal:
    """What a position receives (negative: pays): ``-(markPrice × positionAmt × fundingRate)``, 8 places."""
    return (-(mark * position_amt * rate)).quantize(_MONEY, ROUND_HALF_UP)
