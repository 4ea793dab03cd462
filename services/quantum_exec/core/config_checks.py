"""Checks of the configuration that need more than one field's type: the Redis URL's form, settings
that contradict each other, ``QUANTUM_*`` names that set nothing, env-file lines that say nothing.

Pure functions (no import of :mod:`quantum_exec.core.settings`): the settings call them, ``serve``
reports what they find before anything starts.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
# QUANTUM_* variables that are not the service's settings but are read on purpose: the test
# suite's, the unit's, and those of the components that read their own (the signal gateway, the
# notifier, the risk limits: each checks its names itself).
NOT_SETTINGS_PREFIXES = ("QUANTUM_TEST_", "QUANTUM_GATEWAY_", "QUANTUM_NOTIFY_", "QUANTUM_RISK_")
NOT_SETTINGS = frozenset({"QUANTUM_UNIT_NAME"})


def redis_url_problem(url: str) -> str | None:
    """Why ``url`` is not a Redis URL quantum-exec can use (to follow the URL), or None."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in REDIS_SCHEMES:
        schemes = ", ".join(f"{s}://" for s in REDIS_SCHEMES)
        return f"is not a Redis URL (it must start with one of {schemes}, e.g. redis://127.0.0.1:6379/0)"
    parts = urlsplit(url)
    if scheme.lower() != "unix" and not parts.hostname:
        return "names no host (e.g. redis://127.0.0.1:6379/0)"
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        return "has a port that is not a number from 1 to 65535"
    db: str | None = None
    if scheme.lower() != "unix" and parts.path.strip("/"):
        db = parts.path.strip("/")
    for value in parse_qs(parts.query).get("db", []):
        db = value
    if db is not None and not db.isdigit():
        return f"has a database index {db!r} that is not a whole number (e.g. /0)"
    return None


def db_out_of_range(url: str) -> str:
    """The one line for a server that refuses the URL's database index (SELECT)."""
    parts = urlsplit(url)
    db = parse_qs(parts.query).get("db", [parts.path.strip("/") or "0"])[-1]
    return (
        f"QUANTUM_REDIS_URL: database index {db} is out of range on that server "
        "(Redis has 16 databases, 0-15, unless its `databases` setting says otherwise)"
    )


def unknown_variables(names: Iterable[str], known: Iterable[str]) -> list[str]:
    """``QUANTUM_*`` names that set nothing, said with the nearest known name when one is close."""
    known = sorted(set(known))
    found = []
    for name in sorted(set(names)):
        if not name.startswith("QUANTUM_") or name in known or name in NOT_SETTINGS:
            continue
        if name.startswith(NOT_SETTINGS_PREFIXES):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        found.append(f"{name} is not a setting" + (f" (did you mean {close[0]}?)" if close else ""))
    return found


def env_file_problems(path: Path) -> list[str]:
    """Lines of a systemd EnvironmentFile that set nothing: no ``=``, or no valid name before it."""
    problems = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, _value = line.partition("=")
        key = key.strip()
        if not sep:
            problems.append(f"{path}:{number}: no '=' in {_shorten(line)!r}")
        elif not key or not (key.replace("_", "a").isalnum() and not key[0].isdigit()) or " " in key:
            problems.append(f"{path}:{number}: {_shorten(key)!r} is not a variable name")
    return problems


def contradictions(values: Mapping[str, object]) -> list[str]:
    """Settings that cannot all hold: each as the variables and why."""
    found = []
    default_leverage, max_leverage = values.get("default_leverage"), values.get("max_leverage")
    if (
        isinstance(default_leverage, int)
        and isinstance(max_leverage, int)
        and default_leverage > max_leverage
    ):
        found.append(
            f"QUANTUM_DEFAULT_LEVERAGE={default_leverage} is above QUANTUM_MAX_LEVERAGE={max_leverage}: "
            "every intent without its own leverage would be capped or refused"
        )
    return found


def _shorten(text: str) -> str:
    return text if len(text) <= 40 else text[:39] + "…"
