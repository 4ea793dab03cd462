"""Where notices go, each API's request and how its answer is read.

* Telegram Bot API ``sendMessage``: ``POST <api>/bot<token>/sendMessage`` with JSON
  ``{"chat_id", "text"}`` (plain text, no parse mode, so no character needs escaping); the answer
  is ``{"ok": true, ...}`` or ``{"ok": false, "error_code", "description", "parameters":
  {"retry_after"}}``. Text up to 4096 characters; about one message a second per chat.
* Slack incoming webhook: ``POST <url>`` with ``{"text"}``; ``200 ok``, or 429 with
  ``Retry-After``. Discord takes the same body at its webhook URL with ``/slack`` appended.
* Generic JSON webhook: ``POST <url>`` with ``{"text", "notices": [{"event_id", "kind",
  "text"}]}`` and the header ``X-Quantum-Delivery`` (the outbox id of the last notice: a receiver
  may drop a repeated delivery by it).

The bot token is part of Telegram's URL path: no URL is ever logged or put in an error; a
failure is described by the HTTP status and the API's own description only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from pydantic import SecretStr

from quantum_exec.contracts.codec import truncate
from quantum_exec.notify.outbox import Queued
from quantum_exec.ops.logs import redact


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    body: dict[str, Any]
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Answer:
    """``ok``, or why not (safe to log) and how long the API asked us to wait."""

    ok: bool
    detail: str = ""
    retry_after_s: float | None = None


class Channel(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def max_chars(self) -> int: ...

    def request(self, text: str, batch: Sequence[Queued]) -> Request: ...

    def answer(self, status: int, headers: Mapping[str, str], body: bytes) -> Answer: ...


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("Retry-After", "")
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None


def _http_answer(status: int, headers: Mapping[str, str], body: bytes) -> Answer:
    if 200 <= status < 300:
        return Answer(True)
    detail = f"HTTP {status}: {truncate(redact(body.decode('utf-8', 'replace').strip()), 120)}"
    return Answer(False, detail, _retry_after(headers) if status in (429, 503) else None)


class Telegram:
    name: Final = "telegram"
    max_chars: Final = 4096

    def __init__(self, token: SecretStr, chat_id: str, api_root: str) -> None:
        self._token = token
        self._chat_id = chat_id
        self._api_root = api_root.rstrip("/")

    def request(self, text: str, batch: Sequence[Queued]) -> Request:
        url = f"{self._api_root}/bot{self._token.get_secret_value()}/sendMessage"
        body = {"chat_id": self._chat_id, "text": text, "disable_web_page_preview": True}
        return Request(url, body, {})

    def answer(self, status: int, headers: Mapping[str, str], body: bytes) -> Answer:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            return (
                _http_answer(status, headers, body)
                if status >= 300
                else Answer(False, f"HTTP {status}: not JSON")
            )
        if parsed.get("ok") is True:
            return Answer(True)
        params = parsed.get("parameters")
        retry = params.get("retry_after") if isinstance(params, dict) else None
        description = redact(str(parsed.get("description", "")))
        return Answer(
            False,
            f"HTTP {status}: {parsed.get('error_code', '?')} {truncate(description, 120)}",
            float(retry) if isinstance(retry, int | float) else _retry_after(headers),
        )


class Slack:
    name: Final = "slack"
    max_chars: Final = 3000

    def __init__(self, url: SecretStr) -> None:
        self._url = url

    def request(self, text: str, batch: Sequence[Queued]) -> Request:
        return Request(self._url.get_secret_value(), {"text": text}, {})

    def answer(self, status: int, headers: Mapping[str, str], body: bytes) -> Answer:
        return _http_answer(status, headers, body)


class Webhook:
    name: Final = "webhook"
    max_chars: Final = 16_000

    def __init__(self, url: SecretStr) -> None:
        self._url = url

    def request(self, text: str, batch: Sequence[Queued]) -> Request:
        notices = [{"event_id": q.event_id, "kind": q.kind, "text": q.text} for q in batch]
        headers = {"X-Quantum-Delivery": batch[-1].outbox_id} if batch else {}
        return Request(self._url.get_secret_value(), {"text": text, "notices": notices}, headers)

    def answer(self, status: int, headers: Mapping[str, str], body: bytes) -> Answer:
        return _http_answer(status, headers, body)


def merge(batch: Sequence[Queued], max_chars: int, *, heading: str = "") -> tuple[str, int]:
    """One message of as many queued lines as fit in ``max_chars`` (at least one, cut if it must
    be); returns the text and how many notices it holds."""
    lines: list[str] = [heading] if heading else []
    size = len(heading)
    used = 0
    for queued in batch:
        extra = len(queued.text) + (1 if lines else 0)
        if used and size + extra > max_chars:
            break
        lines.append(queued.text)
        size += extra
        used += 1
    text = "\n".join(lines)
    return (text if len(text) <= max_chars else text[: max_chars - 3] + "..."), used
