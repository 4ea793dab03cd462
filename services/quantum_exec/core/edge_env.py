"""The environment of the edge processes (``quantum-exec gateway`` and ``notify``): their
``QUANTUM_GATEWAY_*`` / ``QUANTUM_NOTIFY_*`` variables are read beside the service's
:class:`~quantum_exec.core.settings.Settings` (which give them Redis, the stream names and the key
prefix), from the same EnvironmentFile, environment and systemd credentials."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from quantum_exec.core.errors import ConfigError
from quantum_exec.core.settings import read_env_file

# The edge's secrets systemd may pass as credentials (files named after the variables).
CREDENTIAL_NAMES: Final = (
    "QUANTUM_GATEWAY_SOURCES",
    "QUANTUM_NOTIFY_TELEGRAM_TOKEN",
    "QUANTUM_NOTIFY_SLACK_URL",
    "QUANTUM_NOTIFY_WEBHOOK_URL",
)


def merged_environment(env_file: Path | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """EnvironmentFile < process environment < systemd credentials, as
    :func:`quantum_exec.core.settings.load_settings` merges them. A ``QUANTUM_GATEWAY_SOURCES``
    credential holds the JSON itself (its content, not a path)."""
    env = os.environ if environ is None else environ
    merged: dict[str, str] = {}
    if env_file is not None:
        merged.update(read_env_file(env_file))
    merged.update(env)
    directory = env.get("CREDENTIALS_DIRECTORY")
    for name in CREDENTIAL_NAMES if directory else ():
        path = Path(directory or "") / name
        if path.is_file():
            merged[name] = path.read_text(encoding="utf-8").strip()
    return merged


def int_setting(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    """An integer variable within ``low..high``; ConfigError naming it otherwise."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    digits = raw.removeprefix("-")
    # ASCII: str.isdigit() is also true for '²' (int() refuses it) and '٣' (int() reads 3).
    if not (digits.isascii() and digits.isdigit()) or not low <= int(raw) <= high:
        raise ConfigError(f"{name}: must be an integer from {low} to {high} (got {raw[:40]!r})")
    return int(raw)
