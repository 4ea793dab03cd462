"""The gateway's sources (``QUANTUM_GATEWAY_SOURCES``): who may post intents, and how each proves it.

A JSON object (inline, or the path of a file holding it), one entry per source name::

    {"desk-bot": {"kind": "hmac", "secret": "...", "rate_per_min": 60},
     "tv":       {"kind": "tradingview", "secret": "...", "allow_from": ["52.89.214.238/32"]}}

``kind`` is ``hmac`` (the request is signed) or ``tradingview`` (it cannot sign: a long secret in
the body or the path, optionally from listed addresses only). Secrets are ``SecretStr`` and at
least :data:`MIN_SECRET_LENGTH` characters: a short one can be guessed at the rate we allow.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import orjson
from pydantic import SecretStr

from quantum_exec.core.errors import ConfigError

VARIABLE: Final = "QUANTUM_GATEWAY_SOURCES"
MIN_SECRET_LENGTH: Final = 24
DEFAULT_RATE_PER_MIN: Final = 60
_NAME_RE: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
_KEYS: Final = frozenset({"kind", "secret", "allow_from", "rate_per_min"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SourceKind(StrEnum):
    HMAC = "hmac"
    TRADINGVIEW = "tradingview"


@dataclass(frozen=True, slots=True)
class Source:
    """One configured producer."""

    name: str
    kind: SourceKind
    secret: SecretStr
    allow_from: tuple[Network, ...] = ()
    rate_per_min: int = DEFAULT_RATE_PER_MIN

    def allows(self, address: str | None) -> bool:
        """True when the source has no allow-list or ``address`` is in it."""
        if not self.allow_from:
            return True
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(ip in net for net in self.allow_from)


def parse_networks(variable: str, raw: Any) -> tuple[Network, ...]:
    """A list of addresses or CIDRs; ConfigError naming ``variable`` and the bad value."""
    if isinstance(raw, str):
        raw = [part for part in raw.replace(",", " ").split() if part]
    if not isinstance(raw, list):
        raise ConfigError(f"{variable}: must be a list of addresses or CIDRs (got {type(raw).__name__})")
    networks: list[Network] = []
    for item in raw:
        try:
            networks.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise ConfigError(f"{variable}: {str(item)[:60]!r} is not an address or CIDR") from None
    return tuple(networks)


def parse_sources(raw: str) -> dict[str, Source]:
    """The sources from the variable's value: inline JSON, or the path of a JSON file."""
    text = raw.strip()
    if not text:
        return {}
    if not text.startswith("{"):
        path = Path(text)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"{VARIABLE}: cannot read {path} ({exc.strerror or type(exc).__name__})"
            ) from None
    try:
        loaded = orjson.loads(text)
    except orjson.JSONDecodeError:
        # Never echo the text: it holds the secrets.
        raise ConfigError(f"{VARIABLE}: not valid JSON (expected an object of sources)") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{VARIABLE}: must be a JSON object of sources (got {type(loaded).__name__})")
    return {str(name): _source(str(name), entry) for name, entry in loaded.items()}


def _source(name: str, entry: Any) -> Source:
    where = f"{VARIABLE}[{name[:64]!r}]"
    if not _NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}: a source name is 1-64 characters of [A-Za-z0-9._-]")
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be an object with kind and secret")
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_KEYS))})")
    try:
        kind = SourceKind(str(entry.get("kind", "")).lower())
    except ValueError:
        raise ConfigError(f"{where}.kind: must be hmac or tradingview (got {entry.get('kind')!r})") from None
    secret = entry.get("secret")
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{where}.secret: must be a string of at least {MIN_SECRET_LENGTH} characters")
    rate = entry.get("rate_per_min", DEFAULT_RATE_PER_MIN)
    if not isinstance(rate, int) or isinstance(rate, bool) or rate < 1:
        raise ConfigError(f"{where}.rate_per_min: must be an integer >= 1 (got {rate!r})")
    allow = parse_networks(f"{where}.allow_from", entry["allow_from"]) if "allow_from" in entry else ()
    return Source(name, kind, SecretStr(secret), allow, rate)
