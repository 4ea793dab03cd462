"""The risk governor's glue on the order path (design.md §7b): admission, reservation, revocation.

The executor asks one :class:`Admission` at its steps; it holds no state of its own. The
governor (the :class:`~.ports.RiskCheck` port) is read through ``risk`` each time, since the
service sets it after the executor is built; without one every method does nothing.

* :meth:`reducing`: a MODIFY admitted as reducing (REDUCING admits it, HALTED refuses it); a
  resumed MODIFY finishes what its legs' make-before-break began, unasked.
* :meth:`admit`: a new entry's first order, reserving what it adds to the exposure limits.
* :meth:`adopt`: a resumed attempt that finds its entry still able to fill holds its reservation
  again (the dead attempt's lapses with its instance).
* :meth:`holding`: around the whole entry: the fence's revocation check until the first order
  has been answered, and the release of the reservation with the result (a lapse when the
  outcome is left to a later attempt).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from decimal import Decimal

from quantum_exec.core.errors import UnknownOutcomeError
from quantum_exec.exchange import fencing
from quantum_exec.execution.netting import only_reduces
from quantum_exec.execution.ports import RiskCheck
from quantum_exec.execution.run import Run


class Admission:
    """Asks the account's risk governor, when there is one, at the executor's steps."""

    def __init__(self, risk: Callable[[], RiskCheck | None]) -> None:
        self._risk = risk

    @property
    def risk(self) -> RiskCheck | None:
        return self._risk()

    async def reducing(self, run: Run) -> None:
        """A MODIFY: reducing for the governor, nothing new while HALTED; not asked on resume."""
        risk = self.risk
        if risk is None or run.attempt.resume:
            return
        zero = Decimal(0)
        await risk.admit(
            run.intent, key=run.key, reduces=True, quantity=zero, price=zero, leverage=0, entry=False
        )

    async def admit(self, run: Run, quantity: Decimal, price: Decimal, *, long: bool) -> None:
        """A new entry, before its first order: reserve what it adds; settled at the first answer."""
        risk = self.risk
        if risk is None:
            return
        intent, before = run.intent, run.position_before
        assert run.out.leverage is not None
        run.admitted_reducing = await risk.admit(
            intent,
            key=run.key,
            reduces=intent.reduce_only or (before is not None and only_reduces(before, quantity, long=long)),
            quantity=quantity,
            price=price,
            leverage=run.out.leverage,
        )
        run.on_first_answer = lambda: risk.settled(run.key)

    async def adopt(self, run: Run, quantity: Decimal, price: Decimal) -> None:
        """A resumed entry that may still fill (working, or a TWAP's children left) holds what it
        adds again; a repair or a reduce-only intent adds nothing."""
        risk = self.risk
        if risk is not None and not (run.attempt.repair or run.intent.reduce_only):
            await risk.adopt(run.intent, key=run.key, quantity=quantity, price=price)

    async def holding(self, run: Run, entry: Callable[[], Awaitable[None]]) -> None:
        """Run ``entry``; what its admission reserved of the exposure limits is held until then."""
        risk = self.risk
        if risk is None:
            await entry()
            return
        passed: list[object] = []

        async def stands() -> None:
            # Until the entry order (or a TWAP child) admitted now has passed this check once:
            # the legs sent after it never depend on the admission.
            waiting = run.on_first_answer
            if waiting is None or any(waiting is done for done in passed):
                return
            await risk.still_admitted(run.key)
            if run.entry_sent:
                passed.append(waiting)

        token = fencing.set_admission(stands)
        try:
            await entry()
        except (UnknownOutcomeError, asyncio.CancelledError):
            # Left to a later attempt (the order may be travelling): it lapses with its lease
            # unless that attempt reserves again (a resumed attempt that finds the entry adopts it).
            await risk.release(run.key, lapse=True)
            raise
        except Exception:
            await risk.release(run.key)
            raise
        finally:
            fencing.reset_admission(token)
        await risk.release(run.key)
