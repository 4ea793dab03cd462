"""What of the stop-management contract this version executes: an intent asking for more is
refused with the field named, never run without it (a protection silently dropped is a lie)."""

from __future__ import annotations

from typing import Final

from quantum_exec.contracts import TradeIntent
from quantum_exec.errors import IntentRejected, ReasonCode

# Fields the contract accepts and the executor does not act on yet.
NOT_YET: Final[tuple[str, ...]] = ("trailing_stop",)


def refuse_unsupported(intent: TradeIntent) -> None:
    """Raise :class:`IntentRejected` when ``intent`` needs a capability not built yet."""
    if intent.side.value == "MODIFY" and intent.break_even_after is not None:
        raise IntentRejected(
            ReasonCode.INVALID_FIELD,
            "break_even_after: on a MODIFY, not executed by this version of quantum-exec",
        )
    for name in NOT_YET:
        if getattr(intent, name) is not None:
            raise IntentRejected(
                ReasonCode.INVALID_FIELD, f"{name}: not executed by this version of quantum-exec"
            )
