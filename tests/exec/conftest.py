"""Executor tests: the real python-binance client against the simulator over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from binance_sim import Simulator
from quantum_exec.core.settings import Settings
from quantum_exec.execution.executor import Executor, create_executor

SIM_KEY = "quantum-sim-key"
SIM_SECRET = "quantum-sim-secret"


@pytest.fixture
def make_settings(sim: Simulator) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "binance_base_url": sim.base_url,
            "api_key": SIM_KEY,
            "api_secret": SIM_SECRET,
            "metrics_port": 0,
            "order_lookup_interval_s": 0.05,
            "recv_window_ms": 2000,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
async def executor(make_settings: Callable[..., Settings]) -> AsyncIterator[Executor]:
    ex = await create_executor(make_settings())
    try:
        yield ex
    finally:
        await ex.close()
