"""Steps the executor and its entry strategies share: the position read, the intent's record."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from quantum_exec.execution.ports import AccountView, Gateway
from quantum_exec.execution.run import Run


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
    return asyncio.ensure_future(account.opening(run.key, run.intent, run.position_before))
