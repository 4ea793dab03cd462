"""How an entry meets a one-way position: the case table and what the entry opens (pure)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from quantum_exec.execution.netting import Netting, netting, opened

D = Decimal


@pytest.mark.parametrize(
    ("position", "quantity", "long", "case", "opens"),
    [
        ("0", "1", True, Netting.FLAT, "1"),
        ("2", "1", True, Netting.SAME_SIDE, "1"),
        ("-2", "1", False, Netting.SAME_SIDE, "1"),
        ("-3", "1", True, Netting.OPPOSITE_SMALLER, "0"),
        ("3", "1", False, Netting.OPPOSITE_SMALLER, "0"),
        ("-1.5", "1.5", True, Netting.OPPOSITE_EQUAL, "0"),
        ("1.5", "1.5", False, Netting.OPPOSITE_EQUAL, "0"),
        ("-0.1", "0.15", True, Netting.OPPOSITE_LARGER, "0.05"),
        ("0.1", "0.15", False, Netting.OPPOSITE_LARGER, "0.05"),
    ],
)
def test_case_and_what_the_entry_opens(
    position: str, quantity: str, long: bool, case: Netting, opens: str
) -> None:
    assert netting(D(position), D(quantity), long=long) is case
    assert opened(D(position), D(quantity), long=long) == D(opens)
