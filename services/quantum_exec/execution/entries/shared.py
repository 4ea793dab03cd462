"""Steps the executor and its entry strategies share: the position read, the intent's record, the
children of a sliced order in the result."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from quantum_exec.contracts import ErrorSource
from quantum_exec.errors import ReasonCode
from quantum_exec.execution.entries.sliced import Sliced, child_orders
from quantum_exec.execution.entries.slices import Plan
from quantum_exec.execution.ports import AccountView, Gateway
from quantum_exec.execution.run import Run
from quantum_exec.ids import Role


async def position_amount(account: AccountView | None, gateway: Gateway, symbol: str) -> Decimal:
    """The position from the live view when it is fresh, else from REST (positionRisk)."""
    known = account.position_amount(symbol) if account is not None else None
    return known if known is not None else await gateway.position_amount(symbol)


def record_opening(account: AccountView | None, run: Run) -> asyncio.Future[None]:
    """Start writing the intent's record (never fails; awaited once the order was sent)."""
    if account is None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done
    return asyncio.ensure_future(account.opening(run.key, run.intent))


def slices_done(run: Run, plan: Plan, sliced: Sliced, role: Role) -> None:
    """The result's children, and why the schedule ended early when it did."""
    run.out.children = child_orders(plan, sliced.orders, run.key, role)
    if sliced.ended_early and sliced.orders:
        sent = sum((o.executed_qty for o in sliced.orders), Decimal(0))
        run.error(
            ReasonCode.ENTRY_ENDED_EARLY,
            ErrorSource.INTERNAL,
            f"{len(sliced.orders)} of {len(plan.children)} orders sent ({sent} of {plan.total} filled): "
            f"{sliced.ended_early}",
        )
