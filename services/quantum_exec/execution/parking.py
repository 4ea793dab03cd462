"""Parking: an attempt that now only waits for the market gives back what the stream layer lent it.

A LIMIT resting, a STOP armed, a TWAP between its slices wait minutes for events. The stream layer
lends each attempt one of the consumer's execution slots (and, in a crash loop, a turn in the
recovery: :mod:`quantum_exec.stream.recovery`); an attempt that reaches such a wait calls
:func:`park` and gives them back for the rest of its run, so what rests never delays other intents.
It keeps its symbol's lease (the symbol's later intents still run after it) and goes on by itself
when its event comes: a fill is protected at once, with nothing to queue for. Unset (a bare
executor, a tool) :func:`park` is a no-op, like the fence in :mod:`quantum_exec.exchange.fencing`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token

Release = Callable[[], None]

_RELEASE: ContextVar[Release | None] = ContextVar("quantum_exec_park_release", default=None)


def set_release(release: Release | None) -> Token[Release | None]:
    """Install what :func:`park` gives back for the current task; must be safe to call twice."""
    return _RELEASE.set(release)


def reset_release(token: Token[Release | None]) -> None:
    _RELEASE.reset(token)


def park() -> None:
    """The caller now waits only for events: give back its slot and recovery turn (once)."""
    release = _RELEASE.get()
    if release is not None:
        release()
