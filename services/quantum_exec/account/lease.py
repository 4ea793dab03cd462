"""The account lease, as the follower holds it: exactly one instance acts on the account.

Renewed every third of its TTL (:meth:`.store.AccountStore.take_lease`); a renewal that fails
(another owner, Redis unreachable) makes this instance act on nothing until it holds the lease
again. :meth:`AccountLease.still_leader` is the fence asked before each order the follower sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from quantum_exec.account.store import AccountStore
from quantum_exec.ops import metrics
from quantum_exec.ops.logs import get_logger
from quantum_exec.ops.outage import OutageLog
from quantum_exec.stream.link import REDIS_DOWN

log = get_logger(__name__)


class AccountLease:
    """Whether this instance holds the account lease; ``on_taken`` runs when it newly does."""

    def __init__(self, store: AccountStore, ttl_s: float, on_taken: Callable[[], None]) -> None:
        self._store = store
        self._every_s = ttl_s / 3
        self._on_taken = on_taken
        self.leader = False
        self._token = 0  # the token last held (a lease back under another one was lost meanwhile)
        # Redis down: one line when it starts, one a minute, one when it ends (not one per renewal).
        self._outage = OutageLog(log, "account_lease.redis_down")

    async def run(self) -> None:
        """Renew the lease forever (a task of the follower)."""
        while True:
            await asyncio.sleep(self._every_s)
            try:
                await self.tick()
                self._outage.ok()
            except REDIS_DOWN as exc:
                self._outage.failed(error=str(exc))
                self.lost()
            except Exception:
                log.exception("account_lease.failed")
                self.lost()

    async def tick(self) -> None:
        """Take or renew the lease."""
        self._held(await self._store.take_lease())

    def _held(self, token: int) -> None:
        """The lease's answer: ``token`` (0: another instance holds it). Taken anew (it was not
        held here, or it comes back under a new token: it lapsed meanwhile, maybe held by
        another) runs ``on_taken``: what was kept while it was not ours is handed over, whichever
        call (a renewal or a fence) took it."""
        was, before = self.leader, self._token
        self.leader = token > 0
        metrics.ACCOUNT_LEASE_HELD.set(1 if self.leader else 0)
        if self.leader:
            self._token = token
        if self.leader and (not was or token != before):
            log.info("account_lease.taken", token=token)
            self._on_taken()
        elif was and not self.leader:
            log.warning("account_lease.lost")

    def lost(self) -> None:
        """The lease could not be renewed: it may be another instance's by now, so act on nothing
        until it is taken again (and the takeover resyncs)."""
        if self.leader:
            log.warning("account_lease.lost", detail="not renewed: acting on nothing until it is ours again")
        self.leader = False
        metrics.ACCOUNT_LEASE_HELD.set(0)

    async def still_leader(self) -> bool:
        """The fence before each order the follower sends: is the account lease still ours?"""
        try:
            self._held(await self._store.take_lease())
        except REDIS_DOWN:
            self.lost()
        return self.leader
