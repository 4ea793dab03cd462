"""The governor's loop, on every instance: the last state read (for the working entries and the
metrics); on the account-lease holder only, the flatten under way (:mod:`.flatten`) and the account-wide
checks (:mod:`.watch`: daily loss, drawdown, liquidation distance).

:func:`start_governor` wires it into a service: the executor's :class:`~.gate.RiskGate`, the
working entries' :class:`~.gate.HaltAwareCloses`, and this loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from redis.asyncio import Redis

from quantum_exec.core.aio import cancel_task
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.gateway import BinanceGateway
from quantum_exec.ops.logs import get_logger
from quantum_exec.ops.outage import OutageLog
from quantum_exec.risk.dayfigure import Stored
from quantum_exec.risk.flatten import Flattener
from quantum_exec.risk.gate import HaltAwareCloses, RiskGate
from quantum_exec.risk.limits import Limits
from quantum_exec.risk.rounds import Rounds
from quantum_exec.risk.store import Fence, RiskStore
from quantum_exec.risk.watch import Watch
from quantum_exec.stream.link import REDIS_DOWN

if TYPE_CHECKING:
    from quantum_exec.account.follower import AccountFollower
    from quantum_exec.execution.executor import Executor
    from quantum_exec.ledger.book import LedgerBook

log = get_logger(__name__)

# How often the state is read: HALTED ends a working entry within about this long.
TICK_S: Final = 0.25
# How often this instance renews its entries' exposure reservations (their lease: .reservations).
RENEW_S: Final = 5.0

FenceSource = Callable[[], Fence | None]


class Governor:
    """See the module docstring; :attr:`gate` is what the executor and the API ask."""

    def __init__(
        self,
        store: RiskStore,
        gate: RiskGate,
        flattener: Flattener | None,
        fence: FenceSource,
        watch: Watch | None = None,
        check_interval_s: float = 1.0,
    ) -> None:
        self.store = store
        self.gate = gate
        # Redis down: one line when it starts, one a minute, one when it ends (not one per tick).
        self._outage = OutageLog(log, "risk.redis_down")
        self._flattener = flattener
        self._fence = fence
        self._watch = watch
        self._check_interval_s = check_interval_s
        self._checked_at = 0.0
        self._renewed_at = 0.0
        gate.on_breach = self.check_soon
        self._task: asyncio.Task[None] | None = None

    @property
    def can_flatten(self) -> bool:
        """A flatten needs the account lease (the account follower: QUANTUM_USER_STREAM)."""
        return self._flattener is not None

    def status(self) -> dict[str, Any]:
        """The state and the limits in force (the control API's and /api/status's ``risk``)."""
        day = self._watch.last if self._watch is not None else None
        return {
            **self.gate.status(),
            "flatten_possible": self.can_flatten,
            # The lease holder's last day figures (None on the other instances).
            "day": day.to_json() if day is not None else None,
        }

    async def start(self) -> None:
        await self.gate.refresh()
        self._task = asyncio.create_task(self._loop(), name="risk-governor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_task(task)
        await self.store.admissions.close()  # the settles still waiting (else they lapse)

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
                self._outage.ok()
            except REDIS_DOWN as exc:
                self._outage.failed(error=str(exc))
            except Exception:
                log.exception("risk.tick_failed")
            await asyncio.sleep(TICK_S)

    async def tick(self) -> None:
        state = await self.gate.refresh()
        now = time.monotonic()
        if now - self._renewed_at >= RENEW_S:
            self._renewed_at = now
            await self.store.reservations.renew()
        fence = self._fence()
        if fence is None or self._flattener is None:
            return
        if state.flatten:
            await self._flattener.step(state.flatten, fence)
        now = time.monotonic()
        if self._watch is not None and now - self._checked_at >= self._check_interval_s:
            self._checked_at = now
            await self._watch.check(self.gate.limits, state, fence)
            if self._watch.last is not None:
                await self.store.save_day(Stored.of(self._watch.last, datetime.now(UTC)).to_fields())

    def check_soon(self) -> None:
        """An admission found the day's limit crossed: the holder's next tick checks."""
        self._checked_at = 0.0


async def start_governor(
    redis: Redis,
    settings: Settings,
    executor: Executor,
    account: AccountFollower | None,
    ledger: LedgerBook | None,
) -> Governor:
    """The governor of a service with the real executor (its gate asked before every entry)."""
    store = RiskStore(redis, settings)
    gate = RiskGate(store, Limits.from_settings(settings), executor.gateway)
    executor.risk = gate
    executor.closes = HaltAwareCloses(executor.closes, gate)
    rounds = Rounds(redis, settings, store)
    flattener: Flattener | None = None
    if account is not None and isinstance(executor.gateway, BinanceGateway):
        flattener = Flattener(store, rounds, executor.gateway)

    def fence() -> Fence | None:
        if account is None or not account.leader:
            return None
        return account.store.lease_key, account.store.held_value

    watch: Watch | None = None
    if account is not None and isinstance(executor.gateway, BinanceGateway):
        watch = Watch(redis, settings, store, rounds, executor.gateway, ledger)
    governor = Governor(store, gate, flattener, fence, watch, settings.risk_check_interval_s)
    await governor.start()
    return governor
