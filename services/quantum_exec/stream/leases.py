"""Per-symbol leases while an intent executes: taking one, keeping it, and the fence before orders.

Only the lease holder executes intents of a symbol; every acquisition gets a new fencing token,
checked by the commit (a holder whose lease expired and was taken over cannot publish) and, right
before every state-changing request (orders, cancels, leverage), by
:func:`quantum_exec.exchange.fencing.ensure_owner` through the check made here (a holder that lost
the lease cannot act on the exchange either).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from quantum_exec.core.backoff import Backoff
from quantum_exec.core.settings import Settings
from quantum_exec.exchange.fencing import OwnershipCheck
from quantum_exec.ops.logs import get_logger
from quantum_exec.stream.entries import Entry
from quantum_exec.stream.link import REDIS_DOWN, RedisLink
from quantum_exec.stream.store import Begun, Lease, Older, Store

log = get_logger(__name__)

# A lease confirmed by Redis this recently needs no renewal round trip before an order. It was
# renewed to last lease_ttl_ms (at least 1 s) from a moment before the confirming request left,
# so it cannot have expired or been taken over within this window; under load (or at a 50 ms RTT)
# 50 ms made almost every order pay a fence round trip (2.5 per intent in the throughput run).
# A resumed attempt waits this much longer past the dead one's last fence (stream.recovery).
FENCE_FRESH_S = 0.5
ACQUIRE_POLL = Backoff(base_s=0.02, cap_s=0.5)


class LeaseKeeper:
    """Renews one lease every ``every_s`` until :meth:`stop` or the lease is lost.

    A timer, not a task: most attempts end long before the first renewal is due, and a task (with
    a ``wait_for`` task inside) per attempt cost more than the attempt's own lease script. A
    renewal under way when stopped is awaited a moment, then cancelled; none is started after.
    """

    def __init__(self, store: Store, link: RedisLink, lease: Lease, every_s: float) -> None:
        self._store = store
        self._link = link
        self._lease = lease
        self._every_s = every_s
        self._stopped = False
        self._renewal: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(every_s, self._due)

    def _due(self) -> None:
        self._timer = None
        if not self._stopped:
            self._renewal = asyncio.create_task(self._renew(), name=f"lease-{self._lease.symbol}")

    async def _renew(self) -> None:
        lease = self._lease
        try:
            if not await self._store.renew_lease(lease):
                if not self._stopped:  # else the commit gave it back meanwhile
                    log.warning("lease.lost", symbol=lease.symbol, token=lease.token)
                return
        except REDIS_DOWN as exc:
            self._link.lost(exc, "lease_renew")
        except Exception:
            log.exception("lease.renew_failed", symbol=lease.symbol)
        if not self._stopped:
            self._timer = asyncio.get_running_loop().call_later(self._every_s, self._due)

    async def stop(self, wait_s: float) -> None:
        """No renewal from now on; one under way gets ``wait_s`` to finish, then is cancelled (a
        cancellation landing inside a Redis call can be lost in the client library: the flag, not
        the cancel, is what ends the renewals)."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        renewal = self._renewal
        if renewal is not None and not renewal.done():
            await asyncio.wait({renewal}, timeout=wait_s)
            renewal.cancel()


class Leases:
    """Takes, keeps and checks per-symbol leases for this consumer (``owner``)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        link: RedisLink,
        stopping: asyncio.Event,
        *,
        other_symbols: Callable[[Entry, str], Sequence[str]] | None = None,
        on_held: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        # Told of each refusal (the symbol): another owner holds the lease (its working entry
        # may be waiting for a CLOSE held here: .signals).
        self._on_held = on_held
        # Older entries known (read by this consumer) to be of another symbol than the entry's:
        # the order check passes over them instead of answering Older for the caller to sort out.
        self._other_symbols = other_symbols
        self._owner = settings.consumer_name
        self._renew_every_s = settings.lease_ttl_ms / 3000
        self._link = link
        self._stopping = stopping

    async def acquire(
        self, entry: Entry, symbol: str, key: str, intent_hash: str
    ) -> tuple[Lease, Begun] | Older | None:
        """Wait for the symbol's lease and mark the intent in flight under it (one script).

        Unless the entry's order was checked already, the same script first looks for older
        entries pending in the group and returns them (:class:`Older`) instead of taking anything.
        None when stopping or the entry was dropped meanwhile.
        """
        waits = ACQUIRE_POLL.delays()
        while not self._stopping.is_set() and not entry.dropped:
            taken: tuple[Lease, Begun] | Older | None
            try:
                taken = await self._store.acquire_and_begin(
                    symbol,
                    self._owner,
                    key,
                    entry.stream_id,
                    intent_hash,
                    received_at=entry.received_at,
                    order_check=not entry.order_checked,
                    other_symbols=(
                        self._other_symbols(entry, symbol)
                        if self._other_symbols is not None and not entry.order_checked
                        else ()
                    ),
                )
            except REDIS_DOWN as exc:
                self._link.lost(exc, "lease")
                taken = None
            else:
                if taken is None and self._on_held is not None:
                    self._on_held(symbol)
            if taken is not None:
                return taken
            await asyncio.sleep(next(waits))
        return None

    def keep(self, lease: Lease) -> LeaseKeeper:
        """Renew the lease every third of its TTL until the keeper is stopped or the lease is lost."""
        return LeaseKeeper(self._store, self._link, lease, self._renew_every_s)

    def owner_check(self, lease: Lease, key: str, confirmed_at: float, *, resumed: bool) -> OwnershipCheck:
        """The check run right before each order: is ``lease`` still ours?

        A lease Redis confirmed moments ago (``confirmed_at``, monotonic, taken before the request
        that confirmed it) cannot have expired, and a takeover needs expiry (or a restart under our
        own name): within :data:`FENCE_FRESH_S` the round trip would only add latency to every order.
        Every check that goes to Redis records its time on the intent (``fenced_at``: no order of
        this attempt leaves later than it plus FENCE_FRESH_S). A ``resumed`` attempt goes to Redis
        for its first order, which counts the attempt: a resume that only looked orders up, or
        waited out an earlier attempt's recvWindow, never counts towards the poison bound.
        """
        confirmed = float("-inf") if resumed else confirmed_at
        count_next = resumed

        async def still_owner() -> bool:
            nonlocal confirmed, count_next
            asked_at = time.monotonic()
            if asked_at - confirmed < FENCE_FRESH_S:
                return True
            count = count_next
            owned = await self._link.retry(
                lambda: self._store.fence(lease, key, count_attempt=count), "fence"
            )
            if owned:
                confirmed = asked_at
                count_next = False
            return owned

        return still_owner

    async def release(self, lease: Lease) -> None:
        """Give the lease back if still ours (else it expires by itself after lease_ttl_ms)."""
        with contextlib.suppress(*REDIS_DOWN):
            await self._store.release_lease(lease)
