"""The account's book of record: marks and reference prices, wallet and settings, orders, algo orders,
positions and trades, with the queries every part of the exchange asks of them and the one place a
fill is booked (position, realized PnL, commission, wallet, order progress, the trade).

No I/O and no clock of its own: ``clock`` returns server time in ms. Events are not sent from here
(binance_sim.notify does that).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from binance_sim import errors
from binance_sim.book import BookConfig
from binance_sim.funding import FundingConfig, is_perpetual, premium_rate
from binance_sim.income import IncomeLedger
from binance_sim.market import ONE, ZERO, MarketData, SymbolSpec
from binance_sim.model import (
    DEFAULT_LEVERAGE,
    Account,
    AlgoOrder,
    Ids,
    Order,
    Position,
    Trade,
    hedge_closing,
    money,
)
from binance_sim.params import Params


class Ledger:
    """The state of one simulated account on one exchange."""

    def __init__(
        self,
        market: MarketData,
        clock: Callable[[], int],
        *,
        slippage_bps: Decimal = ZERO,
        book: BookConfig | None = None,
        funding: FundingConfig | None = None,
    ) -> None:
        self.market = market
        self.clock = clock
        self.slippage_bps = slippage_bps
        self.book = book or BookConfig()
        self.funding = funding or FundingConfig()
        self._ids = Ids()
        self.reset()

    @property
    def ids(self) -> Ids:
        """The id counters."""
        return self._ids

    def reset(self) -> None:
        """Back to the fixtures' starting state (ids keep increasing so stale ids never match)."""
        self.marks: dict[str, Decimal] = dict(self.market.mark_prices)
        assets = [a["asset"] for a in self.market.exchange_info.get("assets", [])]
        wallet = {asset: ZERO for asset in assets}
        wallet.update(self.market.wallet)
        self.account = Account(wallet=wallet)
        self.orders: dict[int, Order] = {}
        self.open_orders: dict[int, Order] = {}
        self.algo_orders: dict[int, AlgoOrder] = {}
        self.open_algo: dict[int, AlgoOrder] = {}
        # Crossed triggers waiting to be placed (TRIGGERING) and triggered algos by their real order.
        self.triggering: dict[int, AlgoOrder] = {}
        self.algo_by_order: dict[int, AlgoOrder] = {}
        self.positions: dict[tuple[str, str], Position] = {}
        self.trades: list[Trade] = []
        self.income = IncomeLedger()
        # Set rates (the market state's, unless rates come from the premium; /_sim/fundingRate's).
        self.funding_rates: dict[str, Decimal] = (
            {} if self.funding.premium else dict(self.market.funding_rates)
        )
        # Every settlement: (symbol, funding time, rate, mark), as GET /fapi/v1/fundingRate lists them.
        self.funding_history: list[tuple[str, int, Decimal, Decimal]] = []
        # Index and last (contract) price where they differ from the mark (absent: equal to the mark).
        self.index_prices: dict[str, Decimal] = {}
        self.last_prices: dict[str, Decimal] = {}

    # ----- market data -------------------------------------------------------------------------

    def spec(self, symbol: str) -> SymbolSpec:
        """Rules of a known symbol; -1121 otherwise."""
        spec = self.market.symbols.get(symbol)
        if spec is None:
            raise errors.INVALID_SYMBOL()
        return spec

    def trading_spec(self, params: Params) -> SymbolSpec:
        spec = self.spec(params.req_str("symbol"))
        if spec.status != "TRADING":
            raise errors.INVALID_SYMBOL_STATUS()
        return spec

    def mark(self, symbol: str) -> Decimal:
        """Current mark price (the fixture's until moved)."""
        return self.marks[symbol]

    def index_price(self, symbol: str) -> Decimal:
        """Index price (premiumIndex's indexPrice): the mark unless set apart."""
        return self.index_prices.get(symbol, self.marks[symbol])

    def last_price(self, symbol: str) -> Decimal:
        """Last contract price (the ticker's price; CONTRACT_PRICE triggers watch it): the mark unless set."""
        return self.last_prices.get(symbol, self.marks[symbol])

    def set_reference_prices(self, symbol: str, *, index: Decimal | None, last: Decimal | None) -> None:
        """Set the index and last price apart from the mark (None: follow the mark again)."""
        self.spec(symbol)
        for prices, value in ((self.index_prices, index), (self.last_prices, last)):
            if value is None:
                prices.pop(symbol, None)
            elif value <= 0:
                raise errors.PRICE_NOT_POSITIVE()
            else:
                prices[symbol] = value

    def funding_rate(self, symbol: str) -> Decimal:
        """The funding rate the next settlement of ``symbol`` uses (a set rate, else the premium's
        when ``FundingConfig.premium``, else the default)."""
        rate = self.funding_rates.get(symbol)
        if rate is not None:
            return rate
        if self.funding.premium:
            return premium_rate(
                self.mark(symbol), self.index_price(symbol), self.funding, self.funding_interval_ms(symbol)
            )
        return self.funding.default_rate

    def funding_interval_ms(self, symbol: str) -> int:
        """Time between ``symbol``'s settlements: the configured interval, else the symbol's own."""
        if self.funding.interval_ms is not None:
            return self.funding.interval_ms
        return self.market.funding_interval_hours.get(symbol, 8) * 3_600_000

    def funding_intervals(self) -> dict[str, int]:
        """Every perpetual symbol with a mark and its funding interval in ms."""
        return {
            s.symbol: self.funding_interval_ms(s.symbol)
            for s in self.market.symbols.values()
            if is_perpetual(s) and s.symbol in self.marks
        }

    def symbols(self, params: Params) -> list[SymbolSpec]:
        symbol = params.opt_str("symbol")
        return [self.spec(symbol)] if symbol else list(self.market.symbols.values())

    # ----- account settings -------------------------------------------------------------------

    def leverage_of(self, symbol: str) -> int:
        """Leverage set for ``symbol`` (Binance's default 20, capped at the symbol's max)."""
        return self.account.leverage.get(symbol, min(DEFAULT_LEVERAGE, self.spec(symbol).max_leverage))

    def margin_type_of(self, symbol: str) -> str:
        """ISOLATED or CROSSED (the default)."""
        return self.account.margin_type.get(symbol, "CROSSED")

    def position_sides(self) -> tuple[str, ...]:
        """LONG and SHORT in hedge mode, BOTH in one-way mode."""
        return ("LONG", "SHORT") if self.account.dual_side else ("BOTH",)

    # ----- margin ------------------------------------------------------------------------------

    def position(self, symbol: str, position_side: str) -> Position:
        key = (symbol, position_side)
        pos = self.positions.get(key)
        if pos is None:
            pos = self.positions[key] = Position(symbol, position_side)
        return pos

    def unrealized(self, pos: Position) -> Decimal:
        return (self.mark(pos.symbol) - pos.entry_price) * pos.amount if pos.amount else ZERO

    def position_margin(self, pos: Position) -> Decimal:
        return abs(pos.amount) * self.mark(pos.symbol) / self.leverage_of(pos.symbol)

    def order_margin(self, order: Order) -> Decimal:
        if order.reduce_only or not order.is_open:
            return ZERO
        return (order.orig_qty - order.executed_qty) * order.price / self.leverage_of(order.symbol)

    def totals(self) -> dict[str, Decimal]:
        cross_upnl = ZERO
        upnl = ZERO
        position_margin = ZERO
        for pos in self.positions.values():
            if not pos.amount:
                continue
            pnl = self.unrealized(pos)
            upnl += pnl
            if self.margin_type_of(pos.symbol) == "CROSSED":
                cross_upnl += pnl
            position_margin += self.position_margin(pos)
        order_margin = sum((self.order_margin(o) for o in self.open_orders.values()), ZERO)
        wallet = self.account.wallet.get("USDT", ZERO)
        available = wallet + cross_upnl - position_margin - order_margin
        return {
            "wallet": wallet,
            "upnl": upnl,
            "cross_upnl": cross_upnl,
            "position_margin": position_margin,
            "order_margin": order_margin,
            "available": available,
        }

    def available_balance(self) -> Decimal:
        """USDT free for new positions: wallet + cross unrealized PnL - initial margins."""
        return self.totals()["available"]

    def reducible(self, symbol: str, side: str, position_side: str) -> Decimal:
        """How much of an order on ``side`` would reduce the position rather than open one."""
        pos = self.positions.get((symbol, position_side))
        amount = pos.amount if pos else ZERO
        if position_side == "BOTH":
            if side == "BUY":
                return -amount if amount < 0 else ZERO
            return amount if amount > 0 else ZERO
        return abs(amount) if hedge_closing(side, position_side) else ZERO

    def check_margin(self, spec: SymbolSpec, increase: Decimal, price: Decimal) -> None:
        if increase <= 0:
            return
        leverage = self.leverage_of(spec.symbol)
        if increase * price / leverage > self.available_balance():
            raise errors.MARGIN_INSUFFICIENT()
        current = sum(
            (abs(p.amount) for p in self.positions.values() if p.symbol == spec.symbol and p.amount), ZERO
        )
        if (current + increase) * price > spec.max_notional(leverage):
            raise errors.MAX_POSITION_AT_LEVERAGE()

    # ----- validation -----------------------------------------------------------------------------

    def fill(self, order: Order, qty: Decimal, price: Decimal, *, maker: bool) -> Trade:
        """Book one fill: position, realized PnL, commission, wallet, order progress and the trade."""
        pos = self.position(order.symbol, order.position_side)
        signed = qty if order.side == "BUY" else -qty
        old = pos.amount
        realized = ZERO
        if old and (old > 0) != (signed > 0):
            closed = min(abs(old), qty)
            realized = money((price - pos.entry_price) * closed * (ONE if old > 0 else -ONE))
            if qty > abs(old):
                pos.entry_price = price
            elif qty == abs(old):
                pos.entry_price = ZERO
        else:
            total = abs(old) + qty
            pos.entry_price = money((abs(old) * pos.entry_price + qty * price) / total)
        pos.amount = old + signed
        pos.realized += realized
        now = self.clock()
        pos.update_time = now
        rate = self.market.maker_rate if maker else self.market.taker_rate
        quote = qty * price
        commission = money(quote * rate)
        self.account.wallet["USDT"] = self.account.wallet.get("USDT", ZERO) + realized - commission
        order.executed_qty += qty
        order.cum_quote += quote
        order.update_time = now
        trade = Trade(
            trade_id=self._ids.next_trade(),
            order_id=order.order_id,
            symbol=order.symbol,
            side=order.side,
            position_side=order.position_side,
            price=price,
            qty=qty,
            quote_qty=quote,
            commission=commission,
            realized_pnl=realized,
            maker=maker,
            time=now,
        )
        self.trades.append(trade)
        return trade
