"""Typed reads of Binance request parameters, raising the error Binance gives for each kind of bad value."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

from binance_sim import errors
from binance_sim.errors import ErrorSpec

_DECIMAL_RE = re.compile(errors.DECIMAL_PATTERN)
_INT_RE = re.compile(errors.INTEGER_PATTERN)
_CLIENT_ID_RE = re.compile(errors.CLIENT_ID_PATTERN)


class Params:
    """Request parameters (query string and body merged) with Binance-style validation."""

    __slots__ = ("raw",)

    def __init__(self, raw: Mapping[str, str]) -> None:
        self.raw = raw

    def has(self, name: str) -> bool:
        """True when ``name`` was sent with a non-empty value."""
        return bool(self.raw.get(name))

    def opt_str(self, name: str) -> str | None:
        """The value, or None when absent or empty."""
        value = self.raw.get(name)
        return value if value else None

    def req_str(self, name: str) -> str:
        """The value; -1102 when absent or empty."""
        value = self.raw.get(name)
        if not value:
            raise errors.mandatory(name)
        return value

    def req_decimal(self, name: str) -> Decimal:
        """A non-negative decimal; -1102 when absent, -1100 when malformed."""
        return _to_decimal(name, self.req_str(name))

    def opt_decimal(self, name: str) -> Decimal | None:
        """Like :meth:`req_decimal` but None when absent."""
        value = self.opt_str(name)
        return None if value is None else _to_decimal(name, value)

    def req_int(self, name: str) -> int:
        """A non-negative integer; -1102 when absent, -1100 when malformed."""
        return _to_int(name, self.req_str(name))

    def opt_int(self, name: str) -> int | None:
        """Like :meth:`req_int` but None when absent."""
        value = self.opt_str(name)
        return None if value is None else _to_int(name, value)

    def opt_bool(self, name: str, default: bool = False) -> bool:
        """ "true"/"false" in any case; -1130 for anything else."""
        value = self.opt_str(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
        raise errors.invalid_value(name)

    def opt_client_id(self, name: str) -> str | None:
        """A client order id matching Binance's pattern; -1100 otherwise."""
        value = self.opt_str(name)
        if value is not None and not _CLIENT_ID_RE.match(value):
            raise errors.illegal_chars(name, errors.CLIENT_ID_PATTERN)
        return value

    def enum(
        self, name: str, allowed: frozenset[str], error: ErrorSpec | None = None, default: str | None = None
    ) -> str:
        """A value among ``allowed``; -1102 when absent without default, ``error`` (or -1130) when unknown."""
        value = self.opt_str(name)
        if value is None:
            if default is None:
                raise errors.mandatory(name)
            return default
        if value not in allowed:
            raise error() if error is not None else errors.invalid_value(name)
        return value


def _to_decimal(name: str, value: str) -> Decimal:
    if not _DECIMAL_RE.match(value):
        raise errors.illegal_chars(name, errors.DECIMAL_PATTERN)
    try:
        return Decimal(value)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise errors.illegal_chars(name, errors.DECIMAL_PATTERN) from None


def _to_int(name: str, value: str) -> int:
    if not _INT_RE.match(value):
        raise errors.illegal_chars(name, errors.INTEGER_PATTERN)
    return int(value)
