"""Fixtures for the pure-core unit tests: the recorded exchangeInfo and the rules parsed from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from quantum_exec.core.rules import SymbolRules, parse_exchange_info

_REPO = Path(__file__).resolve().parents[2]
# The simulator ships its copy inside the package; the shared one is the original it came from.
_FIXTURE_DIRS = (_REPO / "services" / "binance_sim" / "fixtures", _REPO.parent / "shared" / "fixtures")


def load_fixture(name: str) -> Any:
    """Parse a JSON fixture, preferring the simulator's packaged copy."""
    for directory in _FIXTURE_DIRS:
        path = directory / name
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    raise FileNotFoundError(f"{name} not found in {', '.join(map(str, _FIXTURE_DIRS))}")


@pytest.fixture(scope="session")
def exchange_info() -> dict[str, Any]:
    """The recorded ``GET /fapi/v1/exchangeInfo`` response."""
    data: dict[str, Any] = load_fixture("exchange_info.json")
    return data


@pytest.fixture(scope="session")
def symbol_rules(exchange_info: dict[str, Any]) -> dict[str, SymbolRules]:
    """Rules of every fixture symbol, by symbol."""
    return parse_exchange_info(exchange_info)
