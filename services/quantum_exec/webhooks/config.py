"""The gateway's own settings (``QUANTUM_GATEWAY_*``), read beside the service's :class:`Settings`
(which give it Redis, the stream names and the key prefix) from the same environment and
EnvironmentFile. A bad value stops the start with a message naming the variable."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from quantum_exec.errors import ConfigError
from quantum_exec.settings import read_env_file
from quantum_exec.webhooks.sources import Network, Source, parse_networks, parse_sources

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 9110
DEFAULT_REPLAY_WINDOW_S: Final = 60
DEFAULT_MAX_BODY_BYTES: Final = 16_384


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    sources: dict[str, Source] = field(default_factory=dict)
    replay_window_s: int = DEFAULT_REPLAY_WINDOW_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Peers whose X-Forwarded-For is believed (the TLS proxy in front); nobody's by default.
    trusted_proxies: tuple[Network, ...] = ()

    def secrets(self) -> list[str]:
        """Every source's secret, for the log redactor."""
        return [s.secret.get_secret_value() for s in self.sources.values()]


# The edge's secrets systemd may pass as credentials (files named after the variables).
CREDENTIAL_NAMES: Final = (
    "QUANTUM_GATEWAY_SOURCES",
    "QUANTUM_NOTIFY_TELEGRAM_TOKEN",
    "QUANTUM_NOTIFY_SLACK_URL",
    "QUANTUM_NOTIFY_WEBHOOK_URL",
)


def merged_environment(env_file: Path | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """EnvironmentFile < process environment < systemd credentials, as
    :func:`quantum_exec.settings.load_settings` merges them. A ``QUANTUM_GATEWAY_SOURCES``
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
    if not raw.lstrip("-").isdigit() or not low <= int(raw) <= high:
        raise ConfigError(f"{name}: must be an integer from {low} to {high} (got {raw[:40]!r})")
    return int(raw)


def gateway_config(env: Mapping[str, str]) -> GatewayConfig:
    """The gateway's settings from ``env``; refuses to start without a source."""
    sources = parse_sources(env.get("QUANTUM_GATEWAY_SOURCES", ""))
    if not sources:
        raise ConfigError("QUANTUM_GATEWAY_SOURCES: no source configured (a JSON object or a file path)")
    proxies = env.get("QUANTUM_GATEWAY_TRUSTED_PROXIES", "").strip()
    return GatewayConfig(
        host=env.get("QUANTUM_GATEWAY_HOST", "").strip() or DEFAULT_HOST,
        port=int_setting(env, "QUANTUM_GATEWAY_PORT", DEFAULT_PORT, low=0, high=65_535),
        sources=sources,
        replay_window_s=int_setting(
            env, "QUANTUM_GATEWAY_REPLAY_WINDOW_S", DEFAULT_REPLAY_WINDOW_S, low=1, high=3_600
        ),
        max_body_bytes=int_setting(
            env, "QUANTUM_GATEWAY_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, low=256, high=1 << 20
        ),
        trusted_proxies=parse_networks("QUANTUM_GATEWAY_TRUSTED_PROXIES", proxies) if proxies else (),
    )
