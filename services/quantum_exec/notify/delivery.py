"""One channel's delivery: outbox -> merged message -> the API, paced, retried, recorded.

At most one message per ``min_interval_s``: whatever arrived meanwhile goes into the next message
(up to the channel's length limit), so a burst is a few messages, not a flood the API refuses.
A failure is retried with the shared :class:`~quantum_exec.core.backoff.Backoff` (or after the wait
the API asked for); the notices stay in the outbox until delivered, so nothing is lost while
an API is down, and trading never waits for any of this (another process).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import aiohttp

from quantum_exec.core.backoff import Backoff
from quantum_exec.notify.channels import Answer, Channel, merge
from quantum_exec.notify.outbox import Outbox, Queued, sleep_or
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

RETRY: Backoff = Backoff(base_s=1.0, cap_s=60.0, jitter=0.2)
REQUEST_TIMEOUT_S = 15.0
BATCH = 200
RESENT_HEADING = "(resent after a restart: may repeat)"


class Courier:
    """Delivers the outbox to one channel while ``is_leader()``."""

    def __init__(
        self,
        channel: Channel,
        outbox: Outbox,
        session: aiohttp.ClientSession,
        *,
        min_interval_s: float,
        is_leader: Callable[[], bool],
        retry: Backoff = RETRY,
    ) -> None:
        self.channel = channel
        self._outbox = outbox
        self._session = session
        self._min_interval_s = min_interval_s
        self._is_leader = is_leader
        self._retry = retry
        self.sent_messages = 0

    async def prepare(self) -> None:
        """Fix where a new channel starts (the outbox's end now) before any notice is added."""
        await self._outbox.delivered(self.channel.name)

    async def run(self, stop: asyncio.Event) -> None:
        name = self.channel.name
        while not stop.is_set() and not self._is_leader():
            await sleep_or(stop, 0.2)
        if stop.is_set():
            return
        cursor = await self._outbox.delivered(name)
        # A message was out when the last run ended, its answer unknown: it goes again, marked.
        unsure_upto = await self._outbox.inflight(name)
        failures = 0
        while not stop.is_set():
            if not self._is_leader():
                await sleep_or(stop, 0.2)
                continue
            batch = await self._outbox.after(cursor, count=BATCH, block_ms=500)
            if not batch:
                continue
            heading = (
                RESENT_HEADING
                if unsure_upto is not None and _id(batch[0].outbox_id) <= _id(unsure_upto)
                else ""
            )
            if heading:
                batch = [q for q in batch if _id(q.outbox_id) <= _id(unsure_upto or "0-0")]
            text, used = merge(batch, self.channel.max_chars, heading=heading)
            part = batch[:used]
            last = part[-1].outbox_id
            await self._outbox.mark_inflight(name, last)
            answer = await self._send(text, part)
            if not answer.ok:
                wait = (
                    answer.retry_after_s if answer.retry_after_s is not None else self._retry.delay(failures)
                )
                failures += 1
                log.warning(
                    "notify.send_failed", channel=name, detail=answer.detail, retry_in_s=round(wait, 1)
                )
                await sleep_or(stop, wait)
                continue
            failures = 0
            if not await self._outbox.mark_sent(name, last):
                log.warning("notify.lease_lost", channel=name)
                continue
            cursor = last
            if unsure_upto is not None and _id(last) >= _id(unsure_upto):
                unsure_upto = None
            self.sent_messages += 1
            log.info("notify.sent", channel=name, notices=used, outbox_id=last)
            await sleep_or(stop, self._min_interval_s)

    async def _send(self, text: str, batch: Sequence[Queued]) -> Answer:
        request = self.channel.request(text, batch)
        started = time.monotonic()
        try:
            async with self._session.post(
                request.url,
                json=request.body,
                headers=dict(request.headers),
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
                allow_redirects=False,
            ) as response:
                body = await response.read()
                return self.channel.answer(response.status, response.headers, body)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # Only the exception's type: its text may quote the URL, and Telegram's holds the token.
            return Answer(False, f"{type(exc).__name__} after {time.monotonic() - started:.1f}s")


def _id(outbox_id: str) -> tuple[int, int]:
    millis, _, seq = outbox_id.partition("-")
    return int(millis or 0), int(seq or 0)
