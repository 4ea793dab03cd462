"""The fence between one attempt at an intent and the exchange: is this attempt still the owner?

Fencing tokens stop a stale instance (paused, partitioned, lease expired and taken over) from
*publishing*; they cannot stop it from *sending orders*, and an order it sends after another
instance took the intent over and filled the entry is a second entry (a filled order frees its
client id). So right before every order request the executor asks the check set here by the
stream layer - renew the symbol's lease, False when it was lost - and aborts the attempt with
:class:`OwnershipLost` instead of sending. Unset (a bare executor, a tool) it is a no-op.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token

from quantum_exec.errors import UnknownOutcomeError

OwnershipCheck = Callable[[], Awaitable[bool]]

_CHECK: ContextVar[OwnershipCheck | None] = ContextVar("quantum_exec_ownership_check", default=None)


class OwnershipLost(UnknownOutcomeError):
    """This attempt no longer owns the intent: stop without sending anything more."""


def set_check(check: OwnershipCheck | None) -> Token[OwnershipCheck | None]:
    """Install the check for the current task (and the tasks it starts); returns a reset token."""
    return _CHECK.set(check)


def reset_check(token: Token[OwnershipCheck | None]) -> None:
    _CHECK.reset(token)


async def ensure_owner(what: str) -> None:
    """Raise :class:`OwnershipLost` when the installed check says this attempt lost the intent."""
    check = _CHECK.get()
    if check is not None and not await check():
        raise OwnershipLost(f"lease lost before {what}: another instance owns the intent now")
