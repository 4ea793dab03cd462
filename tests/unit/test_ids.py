"""Deterministic client ids."""

from __future__ import annotations

import re
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quantum_exec.core.ids import Role, client_order_id, is_own_protective, role_of

ROLES: tuple[Role, ...] = get_args(Role)
# Binance's pattern for newClientOrderId / clientAlgoId.
BINANCE_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
OURS = re.compile(r"^qx[estcfr]-[0-9a-f]{30}$")


def test_known_value_never_changes() -> None:
    # In-flight intents are looked up by these ids across restarts and upgrades: a change in the
    # derivation would make the service place their orders a second time.
    assert client_order_id("1766550734062-0", "entry") == "qxe-60e2a7f986a40297aa079613092be5"
    assert client_order_id("1766550734062-0", "sl") == "qxs-60e2a7f986a40297aa079613092be5"


@pytest.mark.parametrize("role", ROLES)
def test_format(role: Role) -> None:
    client_id = client_order_id("sig-2025.12.24:0001", role)
    assert OURS.fullmatch(client_id)
    assert BINANCE_ID.fullmatch(client_id)
    assert len(client_id) == 34
    assert ":" not in client_id and "/" not in client_id


def test_roles_never_collide() -> None:
    ids = {client_order_id("same-key", role) for role in ROLES}
    assert len(ids) == len(ROLES)


def test_protective_ids_are_recognised() -> None:
    key = "1766550734062-0"
    assert is_own_protective(client_order_id(key, "sl"))
    assert is_own_protective(client_order_id(key, "tp"))
    others: tuple[Role, ...] = ("entry", "close", "flatten")
    for role in others:
        assert not is_own_protective(client_order_id(key, role))
    # The alternate id a replaced leg is placed under (make before break) is ours too.
    assert is_own_protective(client_order_id(key, "sl", 1))
    assert not is_own_protective(client_order_id(key, "sl", 2))


@pytest.mark.parametrize(
    "other",
    [
        "",
        "web_abc123",
        "qxs-",
        "qxs-" + "0" * 29,
        "qxs-" + "0" * 31,
        "QXS-" + "0" * 30,
        "qxs-" + "A" * 30,
        "qxs-" + "0" * 30 + "\n",
        "xqxs-" + "0" * 30,
    ],
)
def test_foreign_ids_are_not_ours(other: str) -> None:
    assert not is_own_protective(other)


def test_unknown_role_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        client_order_id("k", "stop")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(a=st.text(max_size=80), b=st.text(max_size=80), role=st.sampled_from(ROLES))
def test_deterministic_and_distinct_per_key(a: str, b: str, role: Role) -> None:
    first = client_order_id(a, role)
    assert first == client_order_id(a, role)
    assert BINANCE_ID.fullmatch(first)
    assert (first == client_order_id(b, role)) == (a == b)


def test_any_string_key_is_accepted() -> None:
    assert OURS.fullmatch(client_order_id("\ud800 lone surrogate", "tp"))
    assert OURS.fullmatch(client_order_id("x" * 10_000, "entry"))


@pytest.mark.parametrize("role", ROLES)
def test_the_role_is_read_back_from_our_ids_and_their_children(role: Role) -> None:
    assert role_of(client_order_id("k", role)) == role
    assert role_of(client_order_id("k", role, child=7)) == role
    assert role_of(client_order_id("k", role, child=99)) == role


@pytest.mark.parametrize("other", ["", "qx", "qxz-" + "0" * 30, "qxs0-" + "0" * 30, "abc", "web-order-1"])
def test_a_foreign_id_has_no_role(other: str) -> None:
    assert role_of(other) is None
