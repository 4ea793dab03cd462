"""Unknown intent fields echoed back in the result's ``meta``, within a size budget."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

import orjson

from quantum_exec.contracts.codec import json_default, truncate

# Unknown fields are echoed back in the result's meta; these bounds keep a result under 16 KiB
# whatever a producer sends.
META_MAX_BYTES: Final = 8 * 1024
META_MAX_KEYS: Final = 64
META_MAX_KEY_CHARS: Final = 64
META_MAX_VALUE_CHARS: Final = 1024
META_MAX_DEPTH: Final = 16
META_TRUNCATED_KEY: Final = "_meta_truncated"
_META_MAX_NUMBER_DIGITS: Final = 40


def bounded_meta(extras: Mapping[Any, Any]) -> dict[str, Any]:
    """Echo unknown fields, within a size budget: long strings are cut, unwritable or deep values
    replaced by a short description, and keys beyond the budget dropped (flagged)."""
    meta: dict[str, Any] = {}
    budget = META_MAX_BYTES
    truncated = False
    for raw_key, raw_value in extras.items():
        key = raw_key if isinstance(raw_key, str) else _safe_text(raw_key)
        key = key[:META_MAX_KEY_CHARS]
        value, cost = _bounded_value(raw_value)
        cost += len(key) + 4
        if cost > budget or len(meta) >= META_MAX_KEYS:
            truncated = True
            continue
        budget -= cost
        meta[key] = value
    if truncated:
        meta[META_TRUNCATED_KEY] = True
    return meta


def _bounded_value(value: Any) -> tuple[Any, int]:
    """(the value to echo, its serialized size estimate)."""
    if value is None or isinstance(value, bool):
        return value, 8
    if isinstance(value, int) and -(1 << 63) <= value < 1 << 64:
        return value, 24
    if isinstance(value, int | float):
        # Beyond orjson's 64-bit integers, or a float (kept exact, as money fields are).
        value = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if isinstance(value, Decimal):
        _, digits, _ = value.as_tuple()
        if value.is_finite() and len(digits) <= _META_MAX_NUMBER_DIGITS:
            return value, 64
        # NaN/Infinity are not JSON numbers; a number with a million digits is not an echo.
        return _bounded_value(truncate(str(value), 64))
    if isinstance(value, str):
        if len(value) > META_MAX_VALUE_CHARS:
            value = value[: META_MAX_VALUE_CHARS - 3] + "..."
        if value.isascii() and value.isprintable():
            # The common case, sized without serializing: only quote and backslash get escaped.
            return value, len(value) + 2 + value.count('"') + value.count("\\")
        try:
            return value, len(orjson.dumps(value))
        except orjson.JSONEncodeError:  # lone surrogates
            return _bounded_value(value.encode("utf-8", "replace").decode("utf-8"))
    if isinstance(value, dict | list) and not _deeper_than(value, META_MAX_DEPTH):
        try:
            text = orjson.dumps(value, default=json_default)
        except (orjson.JSONEncodeError, TypeError):
            return f"<unserializable {type(value).__name__}>", 32
        if len(text) <= META_MAX_VALUE_CHARS:
            return value, len(text)
        return _bounded_value(text.decode("utf-8"))
    return f"<{type(value).__name__} omitted>", 32


def _deeper_than(root: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _safe_text(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__}>"
