"""The live OCO: which of our protective orders to cancel or shrink, given the account after an event.

Binance has no OCO for futures: when a stop fills, its target stays armed (the orphan TP that
users of the peers complain about; Nautilus #4043 is the restart-between-fill-and-cancel case;
neither Nautilus nor Hummingbot cancels the sibling at the exchange). The plan is computed from
the state alone, not from the event, so it is idempotent: run again after a restart or a
replayed event, it asks for nothing more once the exchange has caught up.

Rules, for each of OUR armed (status NEW) stop-loss/take-profit orders on the symbol:

* its sibling leg of the same intent filled completely -> cancel (whatever the position);
* the position is flat -> cancel;
* its side cannot reduce the position (a SELL stop under a short) -> cancel;
* it is larger than what is left of the position -> replace it by one of the remaining size;
* it is open twice (a replacement placed, the old leg not cancelled yet, or a copy placed by a
  resumed attempt beside one this OCO shrank) -> cancel all but the one that fits the position
  best; a copy no larger than the one kept is an extra copy (its cancel lowers nothing).

Orders of anybody else are never touched; TRIGGERING/TRIGGERED ones are in flight (a cancel
answers -2011) and are left to finish. A leg still settling (:meth:`AccountState.settling`: armed
after every fill seen, so the fill it protects may still be on the way) is left alone until it has
settled: to a view without that fill its position may look flat. Every action but the cancel
after a sibling's fill and the cancel of an extra copy lowers protection because of the position:
the live OCO takes it only on a confirmed position (:mod:`.live_oco`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from quantum_exec.account.roles import leg_ids, sibling_of
from quantum_exec.account.state import AccountState
from quantum_exec.account.views import AlgoView
from quantum_exec.exchange.wire import AlgoStatus, OrderType
from quantum_exec.execution.netting import can_reduce


@dataclass(frozen=True, slots=True)
class Cancel:
    """Cancel the conditional order ``client_algo_id``; ``reason`` is for the log."""

    symbol: str
    client_algo_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Replace:
    """Place the same order as ``old`` (side, type, trigger) for ``new_qty``, then cancel ``old``."""

    symbol: str
    old: AlgoView
    new_qty: Decimal

    @property
    def client_algo_id(self) -> str:
        return self.old.client_algo_id


Action = Cancel | Replace


def _sibling_filled(state: AccountState, leg: AlgoView) -> bool:
    sibling_id = sibling_of(leg.client_algo_id)
    for client_algo_id in leg_ids(sibling_id) if sibling_id else ():
        sibling = state.algo_order(client_algo_id)
        if sibling is None or sibling.status is not AlgoStatus.FINISHED or sibling.executed_qty <= 0:
            continue
        if sibling.close_position or sibling.executed_qty >= sibling.quantity:
            return True
    return False


EXTRA_COPY = "extra copy"  # a twin no larger than the copy kept: cancelled whatever the position


def _covered_by(twin: AlgoView, kept: AlgoView) -> bool:
    """``kept`` closes at least what ``twin`` closes (so cancelling ``twin`` lowers nothing)."""
    return kept.close_position or (not twin.close_position and twin.quantity <= kept.quantity)


def _best_fit(legs: list[AlgoView], remaining: Decimal) -> AlgoView:
    """Of the open copies of one leg, the one to keep: closePosition, else the largest that does not
    exceed the position, else the smallest."""
    fitting = [leg for leg in legs if leg.close_position or leg.quantity <= remaining]
    if fitting:
        return max(fitting, key=lambda a: (a.close_position, a.quantity, a.client_algo_id))
    return min(legs, key=lambda a: (a.quantity, a.client_algo_id))


def plan_oco(state: AccountState, symbol: str) -> list[Action]:
    """The actions that keep our protection on ``symbol`` consistent with the position.

    Raises :class:`~quantum_exec.account.state.StaleStateError` when the view is stale.
    """
    amount = state.position(symbol).amount
    remaining = abs(amount)
    actions: list[Action] = []
    copies: dict[str, list[AlgoView]] = {}
    legs_now = state.open_protective(symbol)
    settling = {leg.client_algo_id for leg in legs_now if state.settling(leg)}
    for leg in legs_now:
        if leg.is_armed:
            copies.setdefault(leg_ids(leg.client_algo_id)[0], []).append(leg)
    for _, legs in sorted(copies.items()):
        leg = legs[0]
        if len(legs) > 1:
            leg = _best_fit(legs, remaining)
            for twin in sorted(legs, key=lambda a: a.client_algo_id):
                if twin is not leg:
                    reason = EXTRA_COPY if _covered_by(twin, leg) else "replaced"
                    actions.append(Cancel(symbol, twin.client_algo_id, reason))
        if _sibling_filled(state, leg):  # first: it holds whatever the position (no check by REST)
            actions.append(Cancel(symbol, leg.client_algo_id, "sibling leg filled"))
        elif amount == 0:
            actions.append(Cancel(symbol, leg.client_algo_id, "position flat"))
        elif not can_reduce(leg.side, amount):
            actions.append(Cancel(symbol, leg.client_algo_id, "side cannot reduce the position"))
        elif (
            not leg.close_position
            and leg.quantity > remaining
            and len(legs) == 1
            and leg.order_type != OrderType.TRAILING_STOP_MARKET  # its callback is not in the view
        ):
            actions.append(Replace(symbol, leg, remaining))  # with a twin: once its cancel is seen
    return [action for action in actions if action.client_algo_id not in settling]
