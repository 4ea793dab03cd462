"""Income history: what ``GET /fapi/v1/income`` reports.

Binance's "Get Income History (USER_DATA)" (USDⓈ-M futures, account REST API; weight 30): optional
``symbol``, ``incomeType``, ``startTime``/``endTime`` (inclusive), ``page``, ``limit`` (default 100, max
1000); "If neither startTime nor endTime is sent, the recent 7-day data will be returned"; each row
is ``{"symbol", "incomeType", "income" (string, 8 decimals), "asset", "info", "time", "tranId",
"tradeId"}`` with ``symbol`` "" when none, ``tradeId`` "" unless a trade caused it, and "tranId is
unique in the same incomeType for a user". The rows that come from trades (REALIZED_PNL when a fill
realized a PnL, COMMISSION when it paid a fee) are derived from the trade list, with the trade id as
their ``tranId``; the others (FUNDING_FEE, TRANSFER, INSURANCE_CLEAR) are booked in an
:class:`IncomeLedger`.

Binance's income history is eventually consistent: a row (a FUNDING_FEE above all) can be listed
seconds or minutes after the ACCOUNT_UPDATE that reported the flow. ``lag_ms`` (the
``income_delay_ms`` fault) reproduces that: a row is listed only once the server clock is that far
past its time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from binance_sim.market import fmt_places

if TYPE_CHECKING:
    from binance_sim.model import Trade

INCOME_TYPES: Final = frozenset(
    {
        "TRANSFER",
        "WELCOME_BONUS",
        "REALIZED_PNL",
        "FUNDING_FEE",
        "COMMISSION",
        "INSURANCE_CLEAR",
        "REFERRAL_KICKBACK",
        "COMMISSION_REBATE",
        "API_REBATE",
        "CONTEST_REWARD",
        "CROSS_COLLATERAL_TRANSFER",
        "OPTIONS_PREMIUM_FEE",
        "OPTIONS_SETTLE_PROFIT",
        "INTERNAL_TRANSFER",
        "AUTO_EXCHANGE",
        "DELIVERED_SETTELMENT",
        "COIN_SWAP_DEPOSIT",
        "COIN_SWAP_WITHDRAW",
        "POSITION_LIMIT_INCREASE_FEE",
        "STRATEGY_UMFUTURES_TRANSFER",
        "FEE_RETURN",
        "BFUSD_REWARD",
    }
)
DEFAULT_WINDOW_MS: Final = 7 * 24 * 3_600_000
_FIRST_TRAN_ID: Final = 9_689_322_392  # the tranId of Binance's documented example


@dataclass(frozen=True, slots=True)
class IncomeRow:
    """One income flow. ``order`` breaks ties of equal ``time`` (trades first, then booking order)."""

    symbol: str
    income_type: str
    income: Decimal
    asset: str
    time: int
    tran_id: int
    trade_id: str = ""
    order: tuple[int, int] = (1, 0)

    def to_json(self) -> dict[str, Any]:
        """The row as Binance sends it (``info`` carries the income type, as in Binance's example)."""
        return {
            "symbol": self.symbol,
            "incomeType": self.income_type,
            "income": fmt_places(self.income, 8),
            "asset": self.asset,
            "info": self.income_type,
            "time": self.time,
            "tranId": self.tran_id,
            "tradeId": self.trade_id,
        }


class IncomeLedger:
    """Income rows booked outside trades, in booking order."""

    def __init__(self) -> None:
        self.rows: list[IncomeRow] = []
        self._next_tran_id = _FIRST_TRAN_ID

    def book(
        self, income_type: str, income: Decimal, time: int, symbol: str = "", asset: str = "USDT"
    ) -> IncomeRow:
        """Record one flow (the caller has already moved the wallet)."""
        self._next_tran_id += 1
        row = IncomeRow(symbol, income_type, income, asset, time, self._next_tran_id, "", (1, len(self.rows)))
        self.rows.append(row)
        return row


def trade_rows(trades: Iterable[Trade]) -> Iterator[IncomeRow]:
    """REALIZED_PNL and COMMISSION rows of the fills (only the non-zero ones, like Binance)."""
    for trade in trades:
        if trade.realized_pnl:
            yield IncomeRow(
                trade.symbol,
                "REALIZED_PNL",
                trade.realized_pnl,
                "USDT",
                trade.time,
                trade.trade_id,
                str(trade.trade_id),
                (0, trade.trade_id * 2),
            )
        if trade.commission:
            yield IncomeRow(
                trade.symbol,
                "COMMISSION",
                -trade.commission,
                "USDT",
                trade.time,
                trade.trade_id,
                str(trade.trade_id),
                (0, trade.trade_id * 2 + 1),
            )
