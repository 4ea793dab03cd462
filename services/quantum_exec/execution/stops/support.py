"""What of the stop-management contract this version executes: an intent asking for more is
refused with the field named, never run without it (a protection silently dropped is a lie)."""

from __future__ import annotations

from typing import Final

from quantum_exec.contracts import TradeIntent
from quantum_exec.core.errors import IntentRejected, ReasonCode

# Fields the contract accepts on a MODIFY and the executor does not act on there yet.
NOT_YET_ON_MODIFY: Final[tuple[str, ...]] = ()


def refuse_unsupported(intent: TradeIntent) -> None:
    """Raise :class:`IntentRejected` when ``intent`` needs a capability not built yet."""
    if intent.side.value != "MODIFY":
        return
    for name in NOT_YET_ON_MODIFY:
        if getattr(intent, name) is not None:
            raise IntentRejected(
                ReasonCode.INVALID_FIELD, f"{name}: on a MODIFY, not executed by this version of quantum-exec"
            )
