"""Signatures of API keys that sign with a private key: Ed25519 and RSA, as Binance verifies them.

Binance signs one payload for every key type: the query string followed by the request body, the
``signature`` parameter left out (as for HMAC). HMAC gives a hex digest; Ed25519 (RFC 8032) and
RSA (PKCS#1 v1.5 over SHA-256) give raw signatures sent base64-encoded and URL-encoded
(https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info, "SIGNED
Endpoint Examples": HMAC, RSA and Ed25519 keys). A signature that does not verify is
``-1022 Signature for this request is not valid.``, as with HMAC.
"""

from __future__ import annotations

import base64
import binascii

from Crypto.Hash import SHA256
from Crypto.PublicKey import ECC, RSA
from Crypto.Signature import eddsa, pkcs1_15

PublicKey = ECC.EccKey | RSA.RsaKey


def load_public_key(pem: str) -> PublicKey:
    """An Ed25519 or RSA public key in PEM (ValueError for anything else)."""
    try:
        key = ECC.import_key(pem)
    except (ValueError, IndexError, TypeError):
        return RSA.import_key(pem)
    if key.curve != "Ed25519":
        raise ValueError(f"a {key.curve} key: Binance accepts Ed25519 or RSA")
    return key


def verify(key: PublicKey, payload: bytes, signature: str) -> bool:
    """True when ``signature`` (base64, already URL-decoded) signs ``payload`` with ``key``."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        if isinstance(key, RSA.RsaKey):
            pkcs1_15.new(key).verify(SHA256.new(payload), raw)
        else:
            eddsa.new(key, "rfc8032").verify(payload, raw)
    except (ValueError, TypeError):
        return False
    return True


def is_ed25519(key: bytes | PublicKey) -> bool:
    """True for an Ed25519 public key (the only type ``session.logon`` accepts)."""
    return isinstance(key, ECC.EccKey) and key.curve == "Ed25519"
