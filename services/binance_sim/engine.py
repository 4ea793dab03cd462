"""The exchange of one simulated account: the parts put together, and the one entry point of each
endpoint. No I/O and no clock of its own: the HTTP layer passes a ``clock`` returning server time in
ms. Every method that serves an endpoint takes the request's :class:`Params` and returns the
JSON-ready value Binance would send, or raises :class:`SimError` with Binance's code and message.

The parts, each over the same :class:`~binance_sim.ledger.Ledger` (the account's state):
:mod:`~binance_sim.orders` (plain orders and matching), :mod:`~binance_sim.algos` (conditional orders
and triggers), :mod:`~binance_sim.liquidation`, :mod:`~binance_sim.views` (read-only answers),
:mod:`~binance_sim.account_settings`, and :mod:`~binance_sim.notify` (the user data stream events).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from decimal import Decimal
from typing import Any

from binance_sim import account_settings, errors, views
from binance_sim.algos import Algos
from binance_sim.amend import Amender
from binance_sim.batch import Countdowns, run_batch
from binance_sim.book import BookConfig
from binance_sim.funding import FundingConfig, funding_fee, is_perpetual
from binance_sim.income import IncomeLedger, IncomeRow
from binance_sim.ledger import Ledger
from binance_sim.liquidation import DEFAULT_MARGIN_CALL_RATIO, Liquidator
from binance_sim.market import ZERO, MarketData, SymbolSpec
from binance_sim.model import JSON, Account, AlgoOrder, Ids, Order, Position, Trade
from binance_sim.notify import EventSink, Notifier
from binance_sim.orders import Orders
from binance_sim.params import Params

__all__ = ["AlgoOrder", "Engine", "EventSink", "Order", "Position", "Trade"]

# State files written before the split name these classes by their old place.
_Account = Account
_Ids = Ids


class Engine:
    """The state of one simulated account on one exchange, and its endpoints."""

    def __init__(
        self,
        market: MarketData,
        clock: Callable[[], int],
        *,
        slippage_bps: Decimal = ZERO,
        book: BookConfig | None = None,
        funding: FundingConfig | None = None,
        liquidation: bool = True,
        max_algo_orders_per_symbol: int | None = None,
        margin_call_ratio: Decimal = DEFAULT_MARGIN_CALL_RATIO,
        notifier: Callable[[Ledger], Notifier] = Notifier,
    ) -> None:
        self.ledger = Ledger(market, clock, slippage_bps=slippage_bps, book=book, funding=funding)
        self.notify = notifier(self.ledger)
        # True: a crossed trigger stops in TRIGGERING until complete_triggers() (the server paces it).
        self.defer_triggers = False
        self.liquidation = liquidation
        self.orders_api = Orders(self.ledger, self.notify)
        self.algos = Algos(
            self.ledger,
            self.notify,
            self.orders_api,
            after_triggers=self.check_liquidation,
            max_per_symbol=max_algo_orders_per_symbol,
        )
        self.amender = Amender(self.ledger, self.notify, self.orders_api)
        self.countdowns = Countdowns(self.ledger, self.orders_api.cancel_all_open_orders)
        self.liquidator = Liquidator(
            self.ledger, self.notify, self.algos.cancel_algo, margin_call_ratio=margin_call_ratio
        )

    # ----- the ledger's state, as the server, persistence and tests read it ---------------------

    @property
    def market(self) -> MarketData:
        """The exchange info and market state the simulator started from."""
        return self.ledger.market

    @property
    def clock(self) -> Callable[[], int]:
        """Server time in ms."""
        return self.ledger.clock

    @property
    def funding(self) -> FundingConfig:
        """The funding schedule."""
        return self.ledger.funding

    @property
    def stream(self) -> EventSink | None:
        """Where events go (None: nobody listens)."""
        return self.notify.stream

    @stream.setter
    def stream(self, sink: EventSink | None) -> None:
        self.notify.stream = sink

    @property
    def marks(self) -> dict[str, Decimal]:
        """Mark prices by symbol."""
        return self.ledger.marks

    @property
    def index_prices(self) -> dict[str, Decimal]:
        """Index prices set apart from the mark."""
        return self.ledger.index_prices

    @property
    def last_prices(self) -> dict[str, Decimal]:
        """Last prices set apart from the mark."""
        return self.ledger.last_prices

    @property
    def funding_rates(self) -> dict[str, Decimal]:
        """Funding rates by symbol."""
        return self.ledger.funding_rates

    @property
    def account(self) -> Account:
        """Wallet and settings."""
        return self.ledger.account

    @property
    def orders(self) -> dict[int, Order]:
        """Every order by id."""
        return self.ledger.orders

    @property
    def open_orders(self) -> dict[int, Order]:
        """Resting orders by id."""
        return self.ledger.open_orders

    @property
    def algo_orders(self) -> dict[int, AlgoOrder]:
        """Every algo order by id."""
        return self.ledger.algo_orders

    @property
    def open_algo(self) -> dict[int, AlgoOrder]:
        """Algo orders waiting for their trigger."""
        return self.ledger.open_algo

    @property
    def triggering(self) -> dict[int, AlgoOrder]:
        """Crossed triggers waiting to be placed."""
        return self.ledger.triggering

    @property
    def positions(self) -> dict[tuple[str, str], Position]:
        """Positions by (symbol, position side)."""
        return self.ledger.positions

    @property
    def trades(self) -> list[Trade]:
        """Every fill."""
        return self.ledger.trades

    @property
    def income(self) -> IncomeLedger:
        """Income rows other than the trades' own."""
        return self.ledger.income

    def reset(self) -> None:
        """Back to the fixtures' starting state (ids keep increasing so stale ids never match)."""
        self.ledger.reset()
        self.amender.history.clear()
        self.countdowns.deadlines.clear()

    def spec(self, symbol: str) -> SymbolSpec:
        """Rules of a known symbol; -1121 otherwise."""
        return self.ledger.spec(symbol)

    def mark(self, symbol: str) -> Decimal:
        """Current mark price."""
        return self.ledger.mark(symbol)

    def index_price(self, symbol: str) -> Decimal:
        """Index price (the mark unless set apart)."""
        return self.ledger.index_price(symbol)

    def last_price(self, symbol: str) -> Decimal:
        """Last contract price (the mark unless set apart)."""
        return self.ledger.last_price(symbol)

    def set_reference_prices(self, symbol: str, *, index: Decimal | None, last: Decimal | None) -> None:
        """Set the index and last price apart from the mark (None: follow the mark again)."""
        self.ledger.set_reference_prices(symbol, index=index, last=last)

    def funding_rate(self, symbol: str) -> Decimal:
        """The funding rate the next settlement of ``symbol`` uses."""
        return self.ledger.funding_rate(symbol)

    def leverage_of(self, symbol: str) -> int:
        """Leverage set for ``symbol``."""
        return self.ledger.leverage_of(symbol)

    def margin_type_of(self, symbol: str) -> str:
        """ISOLATED or CROSSED."""
        return self.ledger.margin_type_of(symbol)

    def available_balance(self) -> Decimal:
        """USDT free for new positions."""
        return self.ledger.available_balance()

    def set_balance(self, asset: str, balance: Decimal) -> None:
        """Set a wallet balance directly (tests of -2019 and of low-balance behaviour)."""
        self.ledger.account.wallet[asset] = balance

    # ----- endpoints ------------------------------------------------------------------------------

    def premium_index(self, params: Params) -> JSON | list[JSON]:
        """GET /fapi/v1/premiumIndex."""
        return views.premium_index(self.ledger, params)

    def ticker_price(self, params: Params) -> JSON | list[JSON]:
        """GET /fapi/v1/ticker/price and /fapi/v2/ticker/price."""
        return views.ticker_price(self.ledger, params)

    def leverage_bracket(self, params: Params) -> JSON | list[JSON]:
        """GET /fapi/v1/leverageBracket."""
        return views.leverage_bracket(self.ledger, params)

    def change_leverage(self, params: Params) -> JSON:
        """POST /fapi/v1/leverage; announced as ACCOUNT_CONFIG_UPDATE ``ac`` ("Event: Account
        Configuration Update previous Leverage Update")."""
        answer = account_settings.change_leverage(self.ledger, params)
        now = self.ledger.clock()
        config = {"s": answer["symbol"], "l": answer["leverage"]}
        self.notify.publish({"e": "ACCOUNT_CONFIG_UPDATE", "E": now, "T": now, "ac": config})
        return answer

    def change_margin_type(self, params: Params) -> JSON:
        """POST /fapi/v1/marginType; announced as ACCOUNT_UPDATE of reason MARGIN_TYPE_CHANGE."""
        answer = account_settings.change_margin_type(self.ledger, params)
        self.notify.account_update("MARGIN_TYPE_CHANGE", (params.req_str("symbol"),))
        return answer

    def position_mode(self) -> JSON:
        """GET /fapi/v1/positionSide/dual."""
        return account_settings.position_mode(self.ledger)

    def change_position_mode(self, params: Params) -> JSON:
        """POST /fapi/v1/positionSide/dual."""
        return account_settings.change_position_mode(self.ledger, params)

    def new_order(self, params: Params) -> JSON:
        """POST /fapi/v1/order."""
        self.tick()
        return self.orders_api.new_order(params)

    def query_order(self, params: Params) -> JSON:
        """GET /fapi/v1/order."""
        self.tick()
        return self.orders_api.query_order(params)

    def cancel_order(self, params: Params) -> JSON:
        """DELETE /fapi/v1/order."""
        self.tick()
        return self.orders_api.cancel_order(params)

    def cancel_all_open_orders(self, params: Params) -> JSON:
        """DELETE /fapi/v1/allOpenOrders."""
        self.tick()
        return self.orders_api.cancel_all_open_orders(params)

    def account_config(self, params: Params) -> JSON:
        """GET /fapi/v1/accountConfig."""
        return account_settings.account_config(self.ledger)

    def symbol_config(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/symbolConfig."""
        return account_settings.symbol_config(self.ledger, params)

    def commission_rate(self, params: Params) -> JSON:
        """GET /fapi/v1/commissionRate."""
        return account_settings.commission_rate(self.ledger, params)

    def tick(self) -> None:
        """What time alone does: GTD orders expire, auto-cancel countdowns fire."""
        self.countdowns.fire_due()
        self.orders_api.expire_due()

    def new_orders(self, params: Params) -> list[JSON]:
        """POST /fapi/v1/batchOrders."""
        return run_batch(params, self.new_order)

    def modify_orders(self, params: Params) -> list[JSON]:
        """PUT /fapi/v1/batchOrders."""
        return run_batch(params, self.modify_order)

    def countdown_cancel_all(self, params: Params) -> JSON:
        """POST /fapi/v1/countdownCancelAll."""
        return self.countdowns.set(params)

    def modify_order(self, params: Params) -> JSON:
        """PUT /fapi/v1/order."""
        self.tick()
        return self.amender.modify(params)

    def order_amendments(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/orderAmendment."""
        return self.amender.amendments(params)

    def list_open_orders(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/openOrders."""
        self.tick()
        return self.orders_api.list_open_orders(params)

    def list_all_orders(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/allOrders."""
        self.tick()
        return self.orders_api.list_all_orders(params)

    def user_trades(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/userTrades."""
        return self.orders_api.user_trades(params)

    def trade_against(self, symbol: str, client_order_id: str, quantity: Decimal) -> dict[str, Any]:
        """A taker trades ``quantity`` against our resting order at its price."""
        return self.orders_api.trade_against(symbol, client_order_id, quantity)

    def new_algo_order(self, params: Params) -> JSON:
        """POST /fapi/v1/algoOrder."""
        return self.algos.new_algo_order(params)

    def query_algo_order(self, params: Params) -> JSON:
        """GET /fapi/v1/algoOrder."""
        return self.algos.query_algo_order(params)

    def cancel_algo_order(self, params: Params) -> JSON:
        """DELETE /fapi/v1/algoOrder."""
        return self.algos.cancel_algo_order(params)

    def cancel_all_algo_orders(self, params: Params) -> JSON:
        """DELETE /fapi/v1/algoOpenOrders."""
        return self.algos.cancel_all_algo_orders(params)

    def list_open_algo_orders(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/openAlgoOrders."""
        return self.algos.list_open_algo_orders(params)

    def list_all_algo_orders(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/allAlgoOrders."""
        return self.algos.list_all_algo_orders(params)

    def force_orders(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/forceOrders."""
        return self.liquidator.force_orders(params)

    def funding_rate_history(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/fundingRate."""
        return views.funding_rate_history(self.ledger, params)

    def funding_info(self, params: Params) -> list[JSON]:
        """GET /fapi/v1/fundingInfo."""
        return views.funding_info(self.ledger)

    def position_risk(self, params: Params, version: int) -> list[JSON]:
        """GET /fapi/v2|v3/positionRisk."""
        return views.position_risk(self.ledger, params, version)

    def balance(self, version: int) -> list[JSON]:
        """GET /fapi/v2|v3/balance."""
        return views.balance(self.ledger, version)

    def account_info(self, version: int) -> JSON:
        """GET /fapi/v2|v3/account."""
        return views.account_info(self.ledger, version)

    def state(self) -> JSON:
        """Everything for GET /_sim/state."""
        return views.state(self.ledger)

    # ----- price moves, triggers, liquidation and funding ---------------------------------------

    def set_mark_price(self, symbol: str, price: Decimal) -> None:
        """Move the mark price; fills crossed resting LIMIT orders, then fires crossed algo orders."""
        self.ledger.spec(symbol)
        if price <= 0:
            raise errors.PRICE_NOT_POSITIVE()
        self.ledger.marks[symbol] = price
        self.tick()
        self.orders_api.fill_crossed(symbol, price)
        self.algos.fire_crossed(symbol)
        if not self.defer_triggers:
            self.complete_triggers()  # checks liquidation after the placements
        elif not self.ledger.triggering:
            self.check_liquidation()

    def complete_triggers(self) -> None:
        """Place the real order of every TRIGGERING algo order."""
        self.algos.complete_triggers()

    def check_liquidation(self) -> None:
        """Liquidate positions at or below their maintenance margin (when liquidation is switched on)."""
        if self.liquidation:
            self.liquidator.liquidate_below_maintenance()

    def settle_funding(self, now_ms: int, symbols: Collection[str] | None = None) -> list[IncomeRow]:
        """Pay or collect funding on every open perpetual position now (of ``symbols`` only, when
        given: the ones whose interval ends now); returns the FUNDING_FEE rows."""
        ledger = self.ledger
        for spec in ledger.market.symbols.values():
            if symbols is not None and spec.symbol not in symbols:
                continue
            if is_perpetual(spec) and spec.symbol in ledger.marks:
                rate = ledger.funding_rate(spec.symbol)
                ledger.funding_history.append((spec.symbol, now_ms, rate, ledger.mark(spec.symbol)))
        rows: list[IncomeRow] = []
        for pos in list(ledger.positions.values()):
            spec = ledger.spec(pos.symbol)
            settles = symbols is None or pos.symbol in symbols
            if not pos.amount or not is_perpetual(spec) or not settles:
                continue
            fee = funding_fee(ledger.mark(pos.symbol), pos.amount, ledger.funding_rate(pos.symbol))
            if not fee:
                continue
            ledger.account.wallet["USDT"] = ledger.account.wallet.get("USDT", Decimal(0)) + fee
            rows.append(ledger.income.book("FUNDING_FEE", fee, now_ms, pos.symbol))
        if rows:
            # Only isolated positions are listed (P); a cross position's funding shows in B alone.
            isolated = sorted({r.symbol for r in rows if ledger.margin_type_of(r.symbol) == "ISOLATED"})
            paid = sum((row.income for row in rows), ZERO)
            self.notify.account_update("FUNDING_FEE", isolated, ("USDT",), balance_change=paid)
            self.check_liquidation()
        return rows
