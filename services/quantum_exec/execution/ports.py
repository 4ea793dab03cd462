"""What the executor needs from the exchange: a small Protocol the gateway satisfies.

The executor's decision tree depends on this and nothing else of the exchange stack, so it can be
driven by a scripted fake in unit tests as well as by :class:`BinanceGateway` over HTTP.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Protocol

from quantum_exec.contracts import TradeIntent
from quantum_exec.core.rules import SymbolRules
from quantum_exec.exchange.wire import AlgoOrder, AlgoStatus, Order, OrderSide, OrderType, Position, Trade


class Rules(Protocol):
    """The cached exchange rules."""

    @property
    def loaded(self) -> bool: ...

    def get(self, symbol: str) -> SymbolRules | None: ...

    def age_s(self) -> float: ...


class Gateway(Protocol):
    """The exchange operations the executor uses (see :class:`BinanceGateway` for semantics)."""

    @property
    def rules(self) -> Rules: ...

    @property
    def hedge_mode(self) -> bool: ...

    @property
    def base_url(self) -> str: ...

    @property
    def reachable(self) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def mark_price(self, symbol: str) -> Decimal: ...

    async def max_leverage(self, symbol: str) -> int | None: ...

    async def positions(self, symbol: str | None = None) -> list[Position]: ...

    async def position_amount(self, symbol: str) -> Decimal: ...

    async def get_order(self, symbol: str, client_order_id: str) -> Order | None: ...

    async def get_algo(self, client_algo_id: str) -> AlgoOrder | None: ...

    async def open_algo_orders(self, symbol: str | None = None) -> list[AlgoOrder]: ...

    async def user_trades(self, symbol: str, order_id: int) -> list[Trade]: ...

    async def taker_rate(self, symbol: str) -> Decimal: ...

    async def set_leverage(self, symbol: str, leverage: int) -> int: ...

    async def set_margin_type(self, symbol: str, margin_type: str) -> None: ...

    async def place_market(
        self,
        symbol: str,
        side: OrderSide,
        quantity: Decimal,
        client_order_id: str,
        *,
        reduce_only: bool = False,
    ) -> Order: ...

    async def place_limit(
        self,
        symbol: str,
        side: OrderSide,
        quantity: Decimal,
        price: Decimal,
        client_order_id: str,
        *,
        time_in_force: str,
        reduce_only: bool = False,
    ) -> Order: ...

    async def cancel_order(self, symbol: str, client_order_id: str) -> Order | None: ...

    async def place_algo(
        self,
        symbol: str,
        side: OrderSide,
        order_type: OrderType,
        trigger_price: Decimal,
        client_algo_id: str,
        *,
        quantity: Decimal | None,
        working_type: str,
        price_protect: bool,
        callback_rate: Decimal | None = None,
        activate_price: Decimal | None = None,
    ) -> AlgoOrder: ...

    async def cancel_algo(self, algo_id: int) -> bool: ...

    async def place_stop_entry(
        self,
        symbol: str,
        side: OrderSide,
        trigger_price: Decimal,
        client_algo_id: str,
        quantity: Decimal,
        *,
        price: Decimal | None,
        time_in_force: str | None,
        working_type: str,
        reduce_only: bool = False,
    ) -> AlgoOrder: ...

    async def get_order_by_id(self, symbol: str, order_id: int) -> Order | None: ...


class Fills(Protocol):
    """An order's fills summed (``account.state.FillSummary``)."""

    @property
    def quantity(self) -> Decimal: ...

    @property
    def commission(self) -> Decimal: ...

    @property
    def commission_asset(self) -> str | None: ...

    @property
    def realized_pnl(self) -> Decimal: ...


class ProtectiveLeg(Protocol):
    """One of our armed protective orders, as the live view knows it."""

    @property
    def algo_id(self) -> int: ...

    @property
    def client_algo_id(self) -> str: ...


class AlgoState(Protocol):
    """A conditional order as the live view last saw it (``account.state.AlgoView``)."""

    @property
    def status(self) -> AlgoStatus: ...


class AccountView(Protocol):
    """The live account (``account.follower.AccountFollower``); ``None`` answers mean "use REST"."""

    def position_amount(self, symbol: str) -> Decimal | None: ...

    def saw_final(self, symbol: str, order_ids: Collection[int], update_time_ms: int) -> None: ...

    def own_protective(self, symbol: str) -> Sequence[ProtectiveLeg] | None: ...

    def conditional_open(self) -> int | None: ...

    async def protection_changed(
        self,
        symbol: str,
        reason: str,
        change_id: str,
        before: Sequence[AlgoOrder],
        after: Sequence[AlgoOrder] | None = None,
        *,
        intent_id: str | None = None,
    ) -> None: ...

    def take_for_cancel(self, symbol: str, placed: Collection[int] = ()) -> list[int] | None: ...

    def claim_cancel(self, algo_id: int) -> None: ...

    def cancel_failed(self, algo_id: int) -> None: ...

    def hold_legs(self, client_algo_ids: list[str]) -> None: ...

    def release_legs(self, client_algo_ids: list[str]) -> None: ...

    async def hold_symbol(self, symbol: str, timeout_s: float = 5.0) -> None: ...

    def release_symbol(self, symbol: str) -> None: ...

    async def break_even(self, symbol: str, *, long: bool) -> tuple[int, Decimal] | None: ...

    async def record_keys(
        self, symbol: str, *, long: bool
    ) -> dict[str, tuple[Decimal | None, int | None]]: ...

    async def fills(self, symbol: str, order_id: int, timeout_s: float = 1.0) -> Fills | None: ...

    async def algo_changed(
        self, client_algo_id: str, timeout_s: float, seen: object = None
    ) -> AlgoState | None: ...

    async def opening(
        self, key: str, intent: TradeIntent, position_before: Decimal | None = None
    ) -> None: ...

    async def resumed(self, key: str, symbol: str) -> tuple[bool | None, Decimal | None]: ...

    async def closed(
        self,
        symbol: str,
        *,
        long: bool | None = None,
        close_key: str | None = None,
        flat_by: Collection[int] = (),
    ) -> None: ...

    def closing(self, symbol: str) -> AbstractContextManager[None]: ...

    async def opened(
        self,
        key: str,
        intent: TradeIntent,
        executed: Decimal,
        *,
        stop_loss: Decimal | None = None,
        take_profit: Decimal | None = None,
        break_even: tuple[int, Decimal] | None = None,
        filled: Decimal | None = None,
        position_before: Decimal | None = None,
        seen: bool = False,
    ) -> None: ...


class RiskCheck(Protocol):
    """The account's risk governor (``risk.gate.RiskGate``): a BUY/SELL may go on, or is refused."""

    async def admit(
        self,
        intent: TradeIntent,
        *,
        key: str,
        reduces: bool,
        quantity: Decimal,
        price: Decimal,
        leverage: int,
        entry: bool = True,
    ) -> bool:
        """Return, or raise ``IntentRejected`` (TRADING_REDUCING / TRADING_HALTED / RISK_RATE /
        RISK_LIMIT) before any order is sent; ``key`` is the intent's idempotency key. An admitted
        ``entry`` holds back a transition that restricts trading until :meth:`settled`. True when
        it was admitted only as reducing (REDUCING): its orders are then sent reduce-only."""
        ...

    async def settled(self, key: str) -> None:
        """The admitted entry's first order has the exchange's answer, or none was sent."""
        ...

    async def admits_child(self, intent: TradeIntent, *, key: str, reduces: bool) -> str | None:
        """Before each later order of an admitted entry (a TWAP's next child): None when the
        trading state, read now, still lets it add what it adds (the child is then admitted like
        an entry, until :meth:`settled`); else why the schedule ends."""
        ...

    @property
    def restricted(self) -> bool:
        """Trading was not ACTIVE at the last read (only reducing entries were admitted)."""
        ...

    async def still_admitted(self, key: str) -> None:
        """Right before the admitted entry's order leaves: raise ``IntentRejected`` when a trading
        state change went ahead without it (its admission revoked)."""
        ...

    async def adopt(self, intent: TradeIntent, *, key: str, quantity: Decimal, price: Decimal) -> None:
        """A resumed attempt found its entry on the exchange: it holds what the entry adds of the
        exposure limits again (the dead attempt's reservation lapses with its instance)."""
        ...

    async def release(self, key: str, *, lapse: bool = False) -> None:
        """The admitted entry has its result: what it reserved of the exposure limits is freed
        (``lapse``: its attempt is left to a later one, the reservation lapses with its lease)."""
        ...


class Plans(Protocol):
    """Where a sliced entry's plan (``execution.entries.slices.Plan`` as JSON) and a partial CLOSE's
    ladder resize (``execution.stops.resize_plan``, under its own key) are kept across restarts."""

    async def load(self, key: str) -> bytes | None: ...

    async def save(self, key: str, plan: bytes) -> None: ...


class CloseRequests(Protocol):
    """CLOSE intents waiting behind a working entry of their symbol (they end it early), and
    whatever else ends working entries (the trading state HALTED, ``risk.gate.HaltAwareCloses``)."""

    async def wait(self, symbol: str, stream_id: str | None, timeout_s: float) -> str | None:
        """Why the working entry of ``symbol`` (its stream id ``stream_id``) must end now, once a
        CLOSE published after it is waiting; else, after ``timeout_s``, None."""
        ...
