"""What one user-stream event means for our legs, read from the live view before or after it is
applied (the follower's event intake acts on the answers: publish, kick the live OCO)."""

from __future__ import annotations

from quantum_exec.account.events import AlgoUpdate
from quantum_exec.account.roles import replacement_of
from quantum_exec.account.state import AccountState
from quantum_exec.account.views import StaleStateError
from quantum_exec.core.ids import is_own_protective
from quantum_exec.exchange.wire import AlgoStatus


def trailing_active(state: AccountState, event: object) -> bool | None:
    """Whether our trailing stop of ``event`` tracked the price before it (None: not one)."""
    if not isinstance(event, AlgoUpdate) or event.activated is None:
        return None
    if not is_own_protective(event.client_algo_id):
        return None
    try:
        seen = state.algo_order(event.client_algo_id)
    except StaleStateError:
        return None
    return bool(seen.activated) if seen is not None else False


def armed_late(state: AccountState, event: AlgoUpdate) -> bool:
    """True when our leg is armed and not settling: every fill before its placement has come
    (one type is ordered), so the view can tell already whether it still protects anything."""
    if not is_own_protective(event.client_algo_id) or event.status is not AlgoStatus.NEW:
        return False
    leg = state.algo_order(event.client_algo_id)
    return leg is not None and leg.is_armed and not state.settling(leg)


def twin_open(state: AccountState, event: AlgoUpdate) -> bool:
    """True when our leg of ``event`` is open under both of its ids (see :func:`.roles.leg_ids`)."""
    if not is_own_protective(event.client_algo_id):
        return False
    twin = replacement_of(event.client_algo_id)
    return any(a.client_algo_id == twin for a in state.own_protective_known(event.symbol))
