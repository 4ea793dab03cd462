"""An attempt that dies right after writing its intent's "opened" record, before the result's
commit: the executor's last step runs, then the attempt hangs (its service is stopped, and
another one resumes the intent)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from quantum_exec.execution import executor as executor_module


def die_after_opened(monkeypatch: pytest.MonkeyPatch, key: str | None = None) -> list[Decimal]:
    """From now on the first attempt of ``key`` (of any intent when None) that writes its
    "opened" record hangs after it; the size it wrote is appended to the list returned."""
    real = executor_module.record_opened
    hung: list[Decimal] = []

    async def opened_then_die(account: Any, run: Any, rules: Any, size: Decimal, *, long: bool) -> None:
        await real(account, run, rules, size, long=long)
        if (key is None or run.key == key) and not hung:
            hung.append(size)
            await asyncio.Event().wait()

    monkeypatch.setattr(executor_module, "record_opened", opened_then_die)
    return hung
