"""Reading role, intent digest and sibling out of our client ids."""

from __future__ import annotations

import pytest

from quantum_exec.account.roles import intent_digest, leg_ids, replacement_of, role_of, sibling_of
from quantum_exec.core.ids import client_order_id


@pytest.mark.parametrize("role", ["entry", "sl", "tp", "close", "flatten"])
def test_role_round_trips(role: str) -> None:
    assert role_of(client_order_id("intent-1", role)) == role  # type: ignore[arg-type]


def test_orders_of_one_intent_share_the_digest() -> None:
    digests = {
        intent_digest(client_order_id("k", role)) for role in ("entry", "sl", "tp", "close", "flatten")
    }
    assert len(digests) == 1
    assert intent_digest(client_order_id("other", "sl")) not in digests


def test_sibling_swaps_stop_and_target() -> None:
    sl, tp = client_order_id("k", "sl"), client_order_id("k", "tp")
    assert sibling_of(sl) == tp
    assert sibling_of(tp) == sl


@pytest.mark.parametrize(
    "client_id",
    ["", "web_1", "autoclose-123", "adl_autoclose", "qxs-123", "qxz-" + "0" * 30, "QXS-" + "0" * 30],
)
def test_foreign_ids_are_not_ours(client_id: str) -> None:
    assert role_of(client_id) is None
    assert intent_digest(client_id) is None
    assert sibling_of(client_id) is None


def test_entry_has_no_sibling() -> None:
    assert sibling_of(client_order_id("k", "entry")) is None


def test_a_replaced_leg_alternates_between_two_ids_of_the_same_intent_and_role() -> None:
    sl = client_order_id("k", "sl")
    alternate = replacement_of(sl)
    assert alternate == client_order_id("k", "sl", 1)
    assert replacement_of(alternate) == sl
    assert role_of(alternate) == "sl" and intent_digest(alternate) == intent_digest(sl)
    assert leg_ids(sl) == leg_ids(alternate) == (sl, alternate)
    # The sibling is named by its plain id; leg_ids covers both of its alternates.
    assert sibling_of(alternate) == client_order_id("k", "tp")
    assert leg_ids(sibling_of(alternate) or "") == leg_ids(client_order_id("k", "tp", 1))
