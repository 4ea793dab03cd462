"""An entry against an opposite one-way position: the policy check, what the fill opened, and the
clean-up after it (our legs of the old side cancelled, the result's ``meta._position`` note).

The cases themselves are pure in :mod:`.netting`; this module holds the steps the executor runs.
"""

from __future__ import annotations

from decimal import Decimal

from quantum_exec.core.errors import ExchangeError, IntentRejected, ReasonCode
from quantum_exec.core.rules import SymbolRules, floor_to_step
from quantum_exec.core.settings import OppositePolicy, Settings
from quantum_exec.exchange.fencing import OwnershipLost
from quantum_exec.exchange.wire import AlgoOrder, Order
from quantum_exec.execution.legs import LegPlacer
from quantum_exec.execution.netting import Netting, can_reduce, is_opposite, netting, opened, signed
from quantum_exec.execution.ports import AccountView
from quantum_exec.execution.resolution import run_together
from quantum_exec.execution.run import Run
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

# The result's meta key that says how an entry netted against an opposite position.
POSITION_META_KEY = "_position"


def check_opposite(settings: Settings, run: Run, position: Decimal, quantity: Decimal, *, long: bool) -> None:
    """Under ``QUANTUM_OPPOSITE_POLICY=reject``, refuse an entry against an opposite position."""
    if settings.opposite_policy is OppositePolicy.NET or not is_opposite(position, long=long):
        return
    intent = run.intent
    raise IntentRejected(
        ReasonCode.OPPOSITE_POSITION,
        f"{intent.symbol} holds a {'short' if position < 0 else 'long'} position of {position}: "
        f"a {intent.side.value} of {quantity} would net against it (QUANTUM_OPPOSITE_POLICY=reject)",
    )


def opened_size(run: Run, rules: SymbolRules, entry: Order, *, long: bool) -> Decimal:
    """The position the entry opened on its side: what its new SL/TP must cover."""
    before = run.position_before
    if before is None or not is_opposite(before, long=long):
        return entry.executed_qty
    return floor_to_step(opened(before, entry.executed_qty, long=long), rules.market_step_size)


async def netted(
    legs: LegPlacer,
    account: AccountView | None,
    own_protective: dict[str, set[int]],
    run: Run,
    entry: Order,
    size: Decimal,
    flatten: Order | None,
    *,
    long: bool,
) -> None:
    """After an entry met an opposite position: drop our legs that cannot act, say what happened.

    Reduced: the old legs stay (they still protect the rest; a reduce-only leg larger than the
    position only closes what is there). Closed or flipped: our legs on the intent's side
    protected the old position and can reduce nothing now, so they are cancelled.
    """
    intent, out = run.intent, run.out
    before = run.position_before
    assert before is not None
    case = netting(before, entry.executed_qty, long=long)
    after = before + signed(entry.executed_qty, long=long)
    if flatten is not None:
        after -= signed(flatten.executed_qty, long=long)
    cancelled: list[int] = []
    if case is not Netting.OPPOSITE_SMALLER:
        cancelled = await cancel_stale_legs(legs, own_protective, run, intent.symbol, after)
        if account is not None:
            # The old position is gone: its records must not be re-protected later.
            await account.closed(intent.symbol, long=not long)
    side, symbol = intent.side.value, intent.symbol
    if case is Netting.OPPOSITE_SMALLER:
        note = (
            f"{side} {entry.executed_qty} reduced the {symbol} position from {before} to {after}: "
            "nothing opened, so no new SL/TP; the protective orders already there cover the rest"
        )
    elif case is Netting.OPPOSITE_EQUAL:
        note = (
            f"{side} {entry.executed_qty} closed the {symbol} position of {before}: no new SL/TP; "
            f"{len(cancelled)} of our protective orders that could act no more cancelled"
        )
    else:
        note = (
            f"{side} {entry.executed_qty} closed the {symbol} position of {before} and opened {size}: "
            f"SL/TP sized to {size}; {len(cancelled)} of our protective orders of the old position "
            "cancelled"
        )
    out.meta[POSITION_META_KEY] = {
        "netting": case.value,
        "before": before,
        "after": after,
        "cancelled_algo_ids": cancelled,
        "note": note,
    }
    log.info(
        "position.netted",
        intent_id=run.key,
        symbol=symbol,
        netting=case.value,
        before=str(before),
        after=str(after),
        protected=str(size),
        cancelled=len(cancelled),
    )


async def cancel_stale_legs(
    legs: LegPlacer, own_protective: dict[str, set[int]], run: Run, symbol: str, position: Decimal
) -> list[int]:
    """Cancel our own protective orders on ``symbol`` that cannot reduce ``position``.

    Orders we did not place are never touched. A failure is logged, not raised: the position
    is what the intent asked for, a leg that cannot reduce is refused if it triggers, and
    ``_cancel_orphans`` retries on a flat symbol.
    """
    cancelled: list[int] = []
    gone: set[int] = set()  # cancelled now, or no longer open

    async def cancel(order: AlgoOrder) -> None:
        try:
            if await legs.cancel(order.algo_id):
                cancelled.append(order.algo_id)
            gone.add(order.algo_id)
        except OwnershipLost:
            raise
        except ExchangeError as exc:
            log.warning(
                "position.stale_leg_left",
                intent_id=run.key,
                symbol=symbol,
                algo_id=order.algo_id,
                detail=exc.message,
            )

    with run.step("stale_legs"):
        try:
            stale = [order for order in await legs.open_own(symbol) if not can_reduce(order.side, position)]
        except ExchangeError as exc:
            log.warning("position.stale_legs_unknown", intent_id=run.key, symbol=symbol, detail=exc.message)
            return cancelled
        await run_together(*(cancel(order) for order in stale))
    own_protective.get(symbol, set()).difference_update(gone)
    return sorted(cancelled)
