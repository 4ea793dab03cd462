"""The fence between one attempt at an intent and the exchange: is this attempt still the owner?

Fencing tokens stop a stale instance (paused, partitioned, lease expired and taken over) from
*publishing*; they cannot stop it from *acting on the exchange*. An order it sends after another
instance took the intent over and filled the entry is a second entry (a filled order frees its
client id); a cancel it sends removes a leg that now protects the new owner's position; a
leverage or margin-type change alters the position the new owner is building. So right before
every state-changing request (POST, PUT, DELETE: :attr:`Endpoint.fenced`) the gateway asks the
check set here by its caller - the stream layer's renews the symbol's lease, the account
follower's its account lease; False when it was lost - and aborts with :class:`OwnershipLost`
instead of sending. Unset (a bare executor, a tool) it is a no-op.

A second check, the admission's (:func:`set_admission`, set by the executor while an admitted
entry's first order has no answer), runs after it and is never skipped by the lease's freshness:
it raises ``IntentRejected`` when the risk governor revoked the admission (a trading-state change
went ahead without this entry, :mod:`quantum_exec.risk.admissions`), so the order never leaves. It
has a freshness of its own: no revocation can exist in the first moments after the admission
(:data:`quantum_exec.risk.admissions.REVOKE_FRESH_S`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token

from quantum_exec.core.errors import UnknownOutcomeError

OwnershipCheck = Callable[[], Awaitable[bool]]

AdmissionCheck = Callable[[], Awaitable[None]]

_ADMISSION: ContextVar[AdmissionCheck | None] = ContextVar("quantum_exec_admission_check", default=None)
_CHECK: ContextVar[OwnershipCheck | None] = ContextVar("quantum_exec_ownership_check", default=None)


class OwnershipLost(UnknownOutcomeError):
    """This attempt no longer owns the intent: stop without sending anything more."""


def set_check(check: OwnershipCheck | None) -> Token[OwnershipCheck | None]:
    """Install the check for the current task (and the tasks it starts); returns a reset token."""
    return _CHECK.set(check)


def reset_check(token: Token[OwnershipCheck | None]) -> None:
    _CHECK.reset(token)


def set_admission(check: AdmissionCheck | None) -> Token[AdmissionCheck | None]:
    """Install the admission's check for the current task; returns a reset token."""
    return _ADMISSION.set(check)


def reset_admission(token: Token[AdmissionCheck | None]) -> None:
    _ADMISSION.reset(token)


async def ensure_owner(what: str) -> None:
    """Raise :class:`OwnershipLost` when the installed check says this attempt lost the intent."""
    check = _CHECK.get()
    if check is not None and not await check():
        raise OwnershipLost(
            f"lease lost before {what}: this attempt no longer owns the intent (Redis unreachable "
            "past the lease, or another instance took it over)"
        )
    admission = _ADMISSION.get()
    if admission is not None:
        await admission()  # raises IntentRejected when the entry's admission was revoked
