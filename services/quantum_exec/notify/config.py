"""The notifier's settings (``QUANTUM_NOTIFY_*``), read beside the service's :class:`Settings`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from pydantic import SecretStr

from quantum_exec.core.edge_env import int_setting
from quantum_exec.core.errors import ConfigError
from quantum_exec.notify.channels import Channel, Slack, Telegram, Webhook

DEFAULT_TELEGRAM_API: Final = "https://api.telegram.org"


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    channels: tuple[Channel, ...]
    secrets_: tuple[str, ...] = ()
    # Between two messages of one channel: bursts in between are merged (Telegram: ~1/s per chat).
    min_interval_s: float = 1.0
    # The user data stream must be down this long before it is told.
    user_stream_down_s: int = 60
    # UTC hour of the daily summary of the last 24 hours' closed trades; None: no summary.
    summary_hour: int | None = 0

    def secrets(self) -> list[str]:
        return list(self.secrets_)


def _url(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.lower().startswith(("https://", "http://")):
        # Never echo the value: webhook URLs carry their token.
        raise ConfigError(f"{name}: must be an http(s) URL")
    return raw


def notify_config(env: Mapping[str, str]) -> NotifyConfig:
    """The channels and timings from ``env``; refuses to start without a channel."""
    channels: list[Channel] = []
    secrets: list[str] = []
    token = env.get("QUANTUM_NOTIFY_TELEGRAM_TOKEN", "").strip()
    chat = env.get("QUANTUM_NOTIFY_TELEGRAM_CHAT_ID", "").strip()
    if bool(token) != bool(chat):
        raise ConfigError("QUANTUM_NOTIFY_TELEGRAM_TOKEN and QUANTUM_NOTIFY_TELEGRAM_CHAT_ID go together")
    if token:
        api = _url(env, "QUANTUM_NOTIFY_TELEGRAM_API") or DEFAULT_TELEGRAM_API
        channels.append(Telegram(SecretStr(token), chat, api))
        secrets.append(token)
    for name, kind in (("QUANTUM_NOTIFY_SLACK_URL", Slack), ("QUANTUM_NOTIFY_WEBHOOK_URL", Webhook)):
        url = _url(env, name)
        if url:
            channels.append(kind(SecretStr(url)))
            secrets.append(url)
    if not channels:
        raise ConfigError(
            "no notification channel: set QUANTUM_NOTIFY_TELEGRAM_TOKEN and _CHAT_ID, "
            "QUANTUM_NOTIFY_SLACK_URL or QUANTUM_NOTIFY_WEBHOOK_URL"
        )
    interval_ms = int_setting(env, "QUANTUM_NOTIFY_MIN_INTERVAL_MS", 1000, low=0, high=600_000)
    hour_raw = env.get("QUANTUM_NOTIFY_SUMMARY_HOUR", "").strip().lower()
    summary_hour = (
        None
        if hour_raw in ("off", "none")
        else int_setting(env, "QUANTUM_NOTIFY_SUMMARY_HOUR", 0, low=0, high=23)
    )
    return NotifyConfig(
        channels=tuple(channels),
        secrets_=tuple(secrets),
        min_interval_s=interval_ms / 1000,
        user_stream_down_s=int_setting(env, "QUANTUM_NOTIFY_USER_STREAM_DOWN_S", 60, low=1, high=86_400),
        summary_hour=summary_hour,
    )
