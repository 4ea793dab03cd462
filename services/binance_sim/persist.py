"""The simulated account on disk, so a paper account survives restarts (``--state FILE``).

What is kept: marks, wallet and account settings, every order, algo order, position and trade,
the income ledger, funding rates, reference prices, the order amendments (``GET
/fapi/v1/orderAmendment``) and the id counters (so ids keep increasing across restarts, as on
Binance). Not kept: listen keys, sockets, faults, rate-limit windows.

The file is a pickle written by the simulator itself (atomically: a temporary file renamed over
the old one, owner-only permissions) into a directory the user owns; it is the simulator's own
snapshot, never an interchange format, and is only ever read back by the simulator.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path
from typing import Any

from binance_sim.engine import Engine

FORMAT = 1
STATE_ATTRS = (
    "marks",
    "account",
    "orders",
    "open_orders",
    "algo_orders",
    "open_algo",
    "positions",
    "trades",
    "income",
    "funding_rates",
    "funding_history",
    "index_prices",
    "last_prices",
    "_ids",
)


def save(engine: Engine, path: Path) -> None:
    """Write the engine's account state to ``path`` (atomically)."""
    ledger = engine.ledger
    state = {name: getattr(ledger, name) for name in STATE_ATTRS if hasattr(ledger, name)}
    amendments = {"history": engine.amender.history, "last_id": engine.amender.last_id}
    snapshot = {"format": FORMAT, "state": state, "amendments": amendments}
    data = pickle.dumps(snapshot, protocol=pickle.HIGHEST_PROTOCOL)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def load(engine: Engine, path: Path) -> bool:
    """Restore the engine's account state from ``path``; False when there is none yet."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return False
    data: Any = pickle.loads(raw)  # noqa: S301 - our own snapshot, in the user's private state dir
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a simulator state file of format {FORMAT}")
    for name, value in data["state"].items():
        if name in STATE_ATTRS:
            setattr(engine.ledger, name, value)
    amendments = data.get("amendments")  # absent in files saved before amendments were kept
    if amendments is not None:
        engine.amender.history[:] = amendments["history"]
        engine.amender.last_id = amendments["last_id"]
    for record in (*engine.ledger.orders.values(), *engine.ledger.algo_orders.values()):
        _fill_new_fields(record)
    return True


def _fill_new_fields(record: Any) -> None:
    """A record saved before a field was added gets that field's default."""
    for f in dataclasses.fields(record):
        if not hasattr(record, f.name) and f.default is not dataclasses.MISSING:
            setattr(record, f.name, f.default)
