"""The gateway's own settings (``QUANTUM_GATEWAY_*``), read beside the service's :class:`Settings`
(which give it Redis, the stream names and the key prefix) from the same environment and
EnvironmentFile. A bad value stops the start with a message naming the variable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from quantum_exec.core.edge_env import int_setting
from quantum_exec.core.errors import ConfigError
from quantum_exec.webhooks.sources import Network, Source, parse_networks, parse_sources

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 9110
DEFAULT_REPLAY_WINDOW_S: Final = 60
DEFAULT_MAX_BODY_BYTES: Final = 16_384
# From the end of the request head to the end of its body: the listener's head timeout stops
# there, so without this a body that never comes holds its connection (and 64 hold the port).
DEFAULT_BODY_TIMEOUT_S: Final = 10


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    sources: dict[str, Source] = field(default_factory=dict)
    replay_window_s: int = DEFAULT_REPLAY_WINDOW_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    # Peers whose X-Forwarded-For is believed (the TLS proxy in front); nobody's by default.
    trusted_proxies: tuple[Network, ...] = ()

    def secrets(self) -> list[str]:
        """Every source's secret, for the log redactor."""
        return [s.secret.get_secret_value() for s in self.sources.values()]


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
        body_timeout_s=int_setting(
            env, "QUANTUM_GATEWAY_BODY_TIMEOUT_S", DEFAULT_BODY_TIMEOUT_S, low=1, high=120
        ),
        trusted_proxies=parse_networks("QUANTUM_GATEWAY_TRUSTED_PROXIES", proxies) if proxies else (),
    )
