"""The streams the notifier follows and how an entry of each becomes a notice (or none)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from quantum_exec.account.positions import PositionEvent
from quantum_exec.contracts import PayloadError, decode_result_fields
from quantum_exec.contracts.codec import payload_value
from quantum_exec.notify.render import (
    Notice,
    dead_letter_notice,
    position_notice,
    result_notice,
    risk_notice,
    trade_from_entry,
    trade_notice,
)
from quantum_exec.ops.logs import get_logger

log = get_logger(__name__)

Fields = Mapping[bytes, bytes]
Render = Callable[[str, Fields], "Notice | None"]


@dataclass(frozen=True, slots=True)
class Feed:
    name: str
    stream: str
    render: Render


def _text(fields: Fields) -> dict[str, str]:
    return {
        (k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)): (
            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        )
        for k, v in fields.items()
    }


def _result(_sid: str, fields: Fields) -> Notice | None:
    return result_notice(decode_result_fields(fields))


def _position(_sid: str, fields: Fields) -> Notice | None:
    raw: Any = payload_value(fields)
    return position_notice(PositionEvent.model_validate(json.loads(raw, parse_float=Decimal)))


def _trade(_sid: str, fields: Fields) -> Notice | None:
    trade = trade_from_entry(fields)
    return None if trade is None else trade_notice(trade)


def _dead_letter(sid: str, fields: Fields) -> Notice | None:
    return dead_letter_notice(sid, _text(fields))


def _risk(sid: str, fields: Fields) -> Notice | None:
    return risk_notice(sid, _text(fields))


def feeds(*, result: str, position: str, trades: str, dead_letter: str, risk: str) -> list[Feed]:
    return [
        Feed("result", result, _result),
        Feed("position", position, _position),
        Feed("trade", trades, _trade),
        Feed("dead_letter", dead_letter, _dead_letter),
        Feed("risk", risk, _risk),
    ]


def render(feed: Feed, stream_id: str, fields: Fields) -> Notice | None:
    """The entry's notice; an unreadable entry is logged and skipped (it is not ours to repair)."""
    try:
        return feed.render(stream_id, fields)
    except (PayloadError, ValidationError, ValueError, TypeError, KeyError) as exc:
        log.warning("notify.unreadable_entry", feed=feed.name, stream_id=stream_id, error=type(exc).__name__)
        return None
