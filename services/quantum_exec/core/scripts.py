"""Calling a registered Lua script: EVALSHA, and on NOSCRIPT one SCRIPT LOAD and EVALSHA again.

What redis-py's ``AsyncScript.__call__`` does, without its per-call ``isinstance(client, Pipeline)``
(a check against a class that derives from a ``typing.Protocol``: about 1 % of the service's CPU
under load, on every script call of the order path). For a pipeline keep calling the script
object with ``client=pipe``: that is what registers it for the pipeline's own load.

In a Redis Cluster, ``evalsha`` routes by the script's keys (all in one slot: the settings refuse
others) and ``script_load`` goes to every primary, as with ``AsyncScript``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError
from redis.typing import EncodableT, KeyT

from quantum_exec.core.redis_lane import lane_of


async def run_script(script: AsyncScript, keys: Sequence[KeyT], args: Iterable[EncodableT] = ()) -> Any:
    """Run ``script`` on the client it was registered with (``keys`` then ``args``); through the
    client's lane when it has one (:mod:`.redis_lane`: pipelined with the other scripts of the
    same loop turn)."""
    client: Any = script.registered_client
    lane = lane_of(client)
    evalsha: Any = client.evalsha if lane is None else partial(lane.call, "EVALSHA")
    load: Any = client.script_load if lane is None else partial(lane.call, "SCRIPT", "LOAD")
    try:
        return await evalsha(script.sha, len(keys), *keys, *args)
    except NoScriptError:
        # A server that lost or never had it (restart, failover, another node): load and retry,
        # on the lane too (a burst meeting a restarted server loads in one write, not a
        # connection per caller).
        sha = await load(script.script)
        script.sha = sha.decode() if isinstance(sha, bytes) else str(sha)
        return await evalsha(script.sha, len(keys), *keys, *args)
