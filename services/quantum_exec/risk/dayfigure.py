"""The day's figure at admission: the daily loss and drawdown limits hold from the moment they are
crossed, not from the lease holder's next check (issue #28).

The lease holder's check (:mod:`.watch`, every ``QUANTUM_RISK_CHECK_INTERVAL_S``) makes the
transition and writes its figures to ``<prefix>:risk:day`` (the day, the ledger's booked PnL, the
wallet balance, the equity peak, the unrealized PnL, when). The gate, on any instance, reads them
with the state (same round trip) before an entry that adds exposure, and takes the unrealized PnL
from the exchange's positions now (one ``positionRisk``, shared with the exposure limits' book):
the booked part and the wallet move only when trades close (the holder's next check), the
unrealized part moves with every mark, so a figure of the holder's, however recent, may predate
the mark that crossed the limit. A breach refuses the entry with the code of the state the holder
is about to set (``on_daily_loss``) and has the holder check at its next tick.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from quantum_exec.exchange.wire import Position
from quantum_exec.risk.limits import Limits
from quantum_exec.risk.watch import Day


@dataclass(frozen=True, slots=True)
class Stored:
    """The holder's last figures (see the module docstring)."""

    day: Day
    at_ms: int
    wallet: Decimal | None

    def to_fields(self) -> dict[str, str]:
        day = self.day
        return {
            "day": day.day,
            "booked": str(day.booked),
            "unrealized": str(day.unrealized),
            "wallet": "" if self.wallet is None else str(self.wallet),
            "peak": "" if day.peak is None else str(day.peak),
            "at_ms": str(self.at_ms),
        }

    @classmethod
    def from_fields(cls, raw: dict[str, str]) -> Stored | None:
        if not raw.get("day"):
            return None
        wallet = Decimal(raw["wallet"]) if raw.get("wallet") else None
        peak = Decimal(raw["peak"]) if raw.get("peak") else None
        unrealized = Decimal(raw["unrealized"])
        equity = wallet + unrealized if wallet is not None else None
        day = Day(raw["day"], Decimal(raw["booked"]), unrealized, equity, peak)
        return cls(day, int(raw["at_ms"]), wallet)

    @classmethod
    def of(cls, day: Day, now: datetime) -> Stored:
        wallet = day.equity - day.unrealized if day.equity is not None else None
        return cls(day, int(now.timestamp() * 1000), wallet)

    def now_with(self, positions: list[Position]) -> Day:
        """The figures with the unrealized PnL of ``positions`` (the peak follows the equity)."""
        unrealized = sum((p.unrealized_pnl for p in positions if p.amount != 0), Decimal(0))
        day = self.day
        if self.wallet is None:
            return Day(day.day, day.booked, unrealized)
        equity = self.wallet + unrealized
        peak = equity if day.peak is None else max(day.peak, equity)
        return Day(day.day, day.booked, unrealized, equity, peak)


def day_limits_on(limits: Limits) -> bool:
    return limits.max_daily_loss_usd is not None or limits.max_drawdown_pct is not None


def today(now: datetime) -> str:
    return now.astimezone(UTC).date().isoformat()
