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

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from binance_sim.market import ZERO, SymbolSpec

DEFAULT_FUNDING_RATE: Final = Decimal("0.0001")
EIGHT_HOURS_MS: Final = 8 * 3_600_000
_MONEY: Final = Decimal("0.00000001")


@dataclass(frozen=True, slots=True)
class FundingConfig:
    """``interval_ms``: time between settlements of every symbol (aligned to the epoch, so 8 h gives
    00/08/16 UTC); None (the default): each symbol's own interval, the market state's
    ``fundingIntervalHours`` (Binance runs some perpetuals on 4 h, "Get Funding Rate Info"), 8 h else.
    ``auto``: the server settles by itself on that schedule (off: only ``POST /_sim/funding`` does).
    ``default_rate``: the rate of symbols the market state gives none.
    ``premium``: rates come from the premium of mark over index (:func:`premium_rate`) instead of the
    market state's fixed rates (a rate set through ``POST /_sim/fundingRate`` still wins);
    ``rate_cap``/``rate_floor`` bound them (``GET /fapi/v1/fundingInfo`` shows them)."""

    interval_ms: int | None = None
    auto: bool = False
    default_rate: Decimal = DEFAULT_FUNDING_RATE
    premium: bool = False
    rate_cap: Decimal = Decimal("0.02")
    rate_floor: Decimal = Decimal("-0.02")


def is_perpetual(spec: SymbolSpec) -> bool:
    """Only perpetual contracts fund (PERPETUAL, TRADIFI_PERPETUAL; not CURRENT_QUARTER etc.)."""
    return spec.contract_type.endswith("PERPETUAL")


def next_funding_time(now_ms: int, interval_ms: int) -> int:
    """The first settlement strictly after ``now_ms``."""
    return (now_ms // interval_ms + 1) * interval_ms


def next_settlement(
    now_ms: int, intervals: Mapping[str, int], last: Mapping[str, int]
) -> tuple[int, list[str]]:
    """The next funding time after ``now_ms`` over symbols on their own ``intervals`` (never a second
    settlement of a symbol within one interval of its ``last``), and the symbols settling then."""
    dues = {s: max(next_funding_time(now_ms, iv), last.get(s, 0) + iv) for s, iv in intervals.items()}
    due = min(dues.values())
    return due, sorted(s for s, t in dues.items() if t == due)


def funding_fee(mark: Decimal, position_amt: Decimal, rate: Decimal) -> Decimal:
    """What a position receives (negative: pays): ``-(markPrice × positionAmt × fundingRate)``, 8 places."""
    return (-(mark * position_amt * rate)).quantize(_MONEY, ROUND_HALF_UP)


INTEREST_PER_8H: Final = Decimal("0.0001")  # 0.03 % a day ("Introduction to Binance Futures Funding Rates")
_CLAMP: Final = Decimal("0.0005")
_RATE_PLACES: Final = Decimal("0.00000001")


def premium_rate(mark: Decimal, index: Decimal, config: FundingConfig, interval_ms: int) -> Decimal:
    """Binance's funding rate ``F = P + clamp(I - P, -0.05 %, 0.05 %)``, bounded by the cap and floor;
    the premium ``P`` here is (mark - index) / index (Binance averages a premium index built from
    impact bid/ask prices, which a book of one simulated account does not have), the interest ``I``
    0.01 % per 8 h scaled to the interval."""
    premium = (mark - index) / index if index else ZERO
    scale = Decimal(interval_ms) / EIGHT_HOURS_MS
    interest = INTEREST_PER_8H * scale
    rate = premium + min(max(interest - premium, -_CLAMP * scale), _CLAMP * scale)
    return min(max(rate, config.rate_floor), config.rate_cap).quantize(_RATE_PLACES, ROUND_HALF_UP)
