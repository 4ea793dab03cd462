"""Deterministic client ids derived from the intent key.

Re-executing an intent (after a crash, a redelivery, an unknown outcome) must find the orders it
already placed instead of placing them again; the exchange only lets us look orders up by the id
we gave them, so that id is a pure function of the intent key and the order's role.

Format ``qx<role letter>-<30 hex>``: 34 characters, within Binance's 36 and its
``^[.A-Z:/a-z0-9_-]{1,36}$``, but without ``:`` and ``/``: python-binance signs the raw values
and then sends them form-encoded, so those characters would break the signature.

An entry or close sent as several child orders (TWAP slices, a quantity above MARKET_LOT_SIZE
maxQty) numbers its children after the role letter: ``qxe1-<30 hex>`` .. ``qxe99-<30 hex>``
(35-36 characters; a ``-s1`` suffix would not fit 36 beside a 30-hex digest). The digest is the
intent's, so every child maps back to its intent like the single order does.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final, Literal, get_args

Role = Literal["entry", "sl", "tp", "close", "flatten", "trail"]

PREFIX: Final = "qx"
# Intent ids of the risk governor's own intents (its flatten's CLOSEs, its reductions): predictable
# by design (exactly once across instances), so no producer may use them (the gateway refuses them).
GOVERNOR_INTENT_PREFIX: Final = "risk-"
ROLE_LETTERS: Final[dict[str, str]] = {
    "entry": "e",
    "sl": "s",
    "tp": "t",
    "close": "c",
    "flatten": "f",
    "trail": "r",  # a trailing stop
}
# 15 bytes = 30 hex: 120 bits make a collision between two intents beyond any practical concern.
_DIGEST_BYTES: Final = 15
# Domain separation: the same key hashed for another purpose never yields one of these ids.
_PERSON: Final = b"quantum-exec-id"
# A leg's replacement alternates with the leg under the same id numbered 1 (``qxs1-<30 hex>``):
# an id is unique among open orders, and the new leg is placed before the old one is cancelled.
# The levels 1..5 of a take-profit ladder are the take-profit numbered 2..6 (``qxt2-`` ..
# ``qxt6-``), their replacements ``qxt12-`` .. ``qxt16-``; the plain ``qxt-`` is a single target.
_OWN_PROTECTIVE_RE: Final = re.compile(rf"{PREFIX}(?:[sr]1?|t1?[2-6]?)-[0-9a-f]{{{2 * _DIGEST_BYTES}}}")
MAX_TP_LEVELS: Final = 5
_OWN_RE: Final = re.compile(rf"{PREFIX}([a-z])(?:[1-9][0-9]?)?-[0-9a-f]{{{2 * _DIGEST_BYTES}}}")
_ROLE_OF_LETTER: Final[dict[str, Role]] = {ROLE_LETTERS[role]: role for role in get_args(Role)}


MAX_CHILDREN: Final = 99


def client_order_id(intent_key: str, role: Role, child: int | None = None) -> str:
    """The client id of the order playing ``role`` for the intent ``intent_key`` (always the same);
    ``child`` (1..99) numbers the child orders of a sliced entry or close.

    The role letter sits outside the hash, so two roles of one intent can never collide.
    """
    letter = ROLE_LETTERS[role]
    if child is not None:
        if not 1 <= child <= MAX_CHILDREN:
            raise ValueError(f"child order number {child} outside 1..{MAX_CHILDREN}")
        letter += str(child)
    digest = hashlib.blake2b(
        intent_key.encode("utf-8", "surrogatepass"), digest_size=_DIGEST_BYTES, person=_PERSON
    ).hexdigest()
    return f"{PREFIX}{letter}-{digest}"


def tp_level_id(intent_key: str, level: int) -> str:
    """The client id of level ``level`` (1..5) of the intent's take-profit ladder."""
    if not 1 <= level <= MAX_TP_LEVELS:
        raise ValueError(f"take-profit level {level} outside 1..{MAX_TP_LEVELS}")
    return client_order_id(intent_key, "tp", level + 1)


def tp_level_of(client_algo_id: str) -> int | None:
    """The ladder level (1..5) of one of our take-profit ids (a replacement's too), else None
    (a single take-profit, another role, or not ours)."""
    if not is_own_protective(client_algo_id) or client_algo_id[len(PREFIX)] != ROLE_LETTERS["tp"]:
        return None
    digits = client_algo_id[len(PREFIX) + 1 : client_algo_id.index("-")].removeprefix("1")
    return int(digits) - 1 if digits else None


def is_own_protective(client_algo_id: str) -> bool:
    """True when ``client_algo_id`` is a stop-loss or take-profit id made by this service (or the
    alternate id its replacement is placed under)."""
    return _OWN_PROTECTIVE_RE.fullmatch(client_algo_id) is not None


def role_of(client_id: str) -> Role | None:
    """The role of one of our client ids (a child order's or a replacement leg's too); None for any
    other id."""
    found = _OWN_RE.fullmatch(client_id)
    return _ROLE_OF_LETTER.get(found.group(1)) if found is not None else None


def replacement_of(client_algo_id: str) -> str:
    """The id a replacement of our leg ``client_algo_id`` is placed under: the plain id and the one
    numbered 1 alternate (the new leg is placed while the old one is still open, and an id is unique
    among open orders); a ladder level's ``qxt2-`` alternates with ``qxt12-``. Both name the same
    intent, role and level."""
    cut = len(PREFIX) + 1
    dash = client_algo_id.index("-", cut)
    digits = client_algo_id[cut:dash]
    flipped = digits[1:] if digits.startswith("1") else f"1{digits}"
    return client_algo_id[:cut] + flipped + client_algo_id[dash:]
