"""What our client ids say about an order: its role, its intent (as a digest) and its sibling leg.

``quantum_exec.core.ids`` makes ids ``qx<role letter>-<30 hex>`` where the hex is a hash of the intent
key alone: the two protective legs of one intent share it, and swapping the letter gives the
sibling. The hash is one-way, so the intent id comes from the owner's records (by digest). A leg
replaced (make before break) alternates with the same id numbered 1: :func:`replacement_of`.
"""

from __future__ import annotations

import re
from typing import Final, cast

__all__ = ["intent_digest", "leg_ids", "replacement_of", "role_of", "sibling_of"]

from quantum_exec.core.ids import PREFIX, ROLE_LETTERS, Role, is_own_protective, replacement_of

_ROLES_BY_LETTER: Final[dict[str, Role]] = {letter: cast(Role, role) for role, letter in ROLE_LETTERS.items()}
# The role letter, an optional child number (a slice of a sliced entry or close), the digest.
_OWN_RE: Final = re.compile(rf"{PREFIX}([{''.join(ROLE_LETTERS.values())}])(?:[1-9][0-9]?)?-([0-9a-f]{{30}})")
__all__ = ["intent_digest", "leg_ids", "replacement_of", "role_of", "sibling_of"]

_SIBLING_LETTER: Final = {ROLE_LETTERS["sl"]: ROLE_LETTERS["tp"], ROLE_LETTERS["tp"]: ROLE_LETTERS["sl"]}


def role_of(client_id: str) -> Role | None:
    """The role of an order we placed, or ``None`` when the id is not one of ours."""
    match = _OWN_RE.fullmatch(client_id)
    return _ROLES_BY_LETTER[match.group(1)] if match else None


def intent_digest(client_id: str) -> str | None:
    """The intent part of one of our ids (equal for every order of one intent), else ``None``."""
    match = _OWN_RE.fullmatch(client_id)
    return match.group(2) if match else None


def sibling_of(client_algo_id: str) -> str | None:
    """The other protective leg of the same intent (stop-loss <-> take-profit), else ``None``.

    A level of a take-profit ladder has the stop-loss as its sibling (the stop filled: the level
    protects nothing), but the stop's sibling is the single take-profit only: a ladder level that
    fills closes part of the position, and the stop shrinks to the rest instead of going."""
    if not is_own_protective(client_algo_id):
        return None
    cut = len(PREFIX)
    letter = _SIBLING_LETTER.get(client_algo_id[cut])
    if letter is None:
        return None  # a trailing stop: it leaves with the position (the flat rule cancels the rest)
    return client_algo_id[:cut] + letter + client_algo_id[client_algo_id.index("-", cut) :]


def leg_ids(client_algo_id: str) -> tuple[str, str]:
    """Both ids one protective leg of an intent may be open under (plain first)."""
    other = replacement_of(client_algo_id)
    return (client_algo_id, other) if len(client_algo_id) < len(other) else (other, client_algo_id)
