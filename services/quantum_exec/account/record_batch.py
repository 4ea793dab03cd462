"""Group commit of the intent records: every record command of a loop turn in one Redis write
(on the client's lane, :mod:`quantum_exec.core.redis_lane`; a pipeline where it has none).

The executor writes an intent's record before its entry is sent and again once it filled, and a
CLOSE drops the records of the position it closed; the live OCO and the reconcile read them. Sent
one by one, that bookkeeping was about half of an intent's Redis round trips. Here each command is
queued and one task sends the queue as one pipeline (no transaction): while a pipeline is in
flight, the next one gathers whatever the other intents queue meanwhile. A caller awaits its own
command's answer, so a step that reads its own write (or must not go on before the write is in
Redis: a commit, a kill's successor) still waits for exactly that, never for more than the batch
it rides in.

Commands run in the order they were queued (one pipeline at a time, on one connection), so a read
sees every write queued before it. A Redis error fails every command of that batch (each caller
retries or gives up under its own policy: :mod:`.records`). A script travels as EVAL of its source,
never EVALSHA: a Redis that does not hold it (a restart, a failover, the first call) would answer
NOSCRIPT after the commands behind it in the pipeline had run, so it would run out of order, and
loading it needs SCRIPT LOAD, which names no key: a Redis Cluster pipeline cannot route it, and the
whole batch (other intents' records with it) failed. Scripts here are rare (a CLOSE's drop) and short.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Final

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError

from quantum_exec.core.redis_lane import lane_of

# At most this many commands in one pipeline (a burst is sent in several, in order).
MAX_BATCH: Final = 256


@dataclass(slots=True)
class _Command:
    args: tuple[Any, ...]
    answer: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class RecordBatch:
    """Queues record commands and sends each loop turn's queue as one pipeline."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._queue: deque[_Command] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._sending = False  # a pipeline is in flight (the queue waits for it)
        self.pipelines = 0  # pipelines sent (a figure for tests and benches)

    async def call(self, *args: Any) -> Any:
        """Run one Redis command in the next pipeline; its answer (raises what Redis raised)."""
        return await self._queued(_Command(args))

    async def many(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Run several commands in the next pipeline, together; their answers (raises the first
        error Redis answered)."""
        queued = [_Command(args) for args in commands]
        for command in queued[:-1]:
            self._queue.append(command)
        await self._queued(queued[-1])
        return [await asyncio.shield(command.answer) for command in queued]

    async def script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """Run a registered script in the next pipeline (EVAL of its source: see the module's doc)."""
        return await self._queued(_Command(("EVAL", script.script, len(keys), *keys, *args)))

    async def drained(self) -> None:
        """Wait until every command queued so far was answered (the follower's stop)."""
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)

    async def _queued(self, command: _Command) -> Any:
        self._queue.append(command)
        if not self._sending:
            # Nothing in flight: this caller sends at once (no loop turn lost when Redis is idle);
            # what the others queue meanwhile goes in the next pipeline, from one task.
            self._sending = True
            try:
                with contextlib.suppress(Exception):  # this command's answer holds it
                    await self._send_one()
            finally:
                if self._queue:
                    self._sender = asyncio.get_running_loop().create_task(
                        self._send(), name="account-records"
                    )
                else:
                    self._sending = False
        # Shielded: a caller cancelled meanwhile leaves the batch (and the others' answers) alone.
        return await asyncio.shield(command.answer)

    async def _send(self) -> None:
        try:
            while self._queue:
                with contextlib.suppress(Exception):  # the commands' answers hold it
                    await self._send_one()
        finally:
            self._sending = False

    async def _send_one(self) -> None:
        batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
        try:
            answers = await self._pipeline(batch)
        except BaseException as exc:
            # The callers retry under their own policy; a sender cancelled is an outage to them.
            failure = exc if isinstance(exc, Exception) else RedisConnectionError("record batch cancelled")
            for command in batch:
                if not command.answer.done():
                    command.answer.set_exception(failure)
                    command.answer.exception()  # retrieved: a caller gone meanwhile is not logged
            raise
        self._answer(batch, answers)

    async def _pipeline(self, batch: list[_Command]) -> list[Any]:
        lane = lane_of(self._redis)
        if lane is not None:
            # The client's lane (core.redis_lane): the same one write, in order, without a
            # pipeline object and a pooled connection per batch; a failed connection fails the
            # commands it carried, each with its own error.
            self.pipelines += 1
            return await lane.many([command.args for command in batch])
        async with self._redis.pipeline(transaction=False) as pipe:
            for command in batch:
                pipe.execute_command(*command.args)
            self.pipelines += 1
            answers: list[Any] = await pipe.execute(raise_on_error=False)
            return answers

    def _answer(self, batch: list[_Command], answers: list[Any]) -> None:
        for command, answer in zip(batch, answers, strict=True):
            if command.answer.done():
                continue
            if isinstance(answer, Exception):
                command.answer.set_exception(answer)
                command.answer.exception()
            else:
                command.answer.set_result(answer)
