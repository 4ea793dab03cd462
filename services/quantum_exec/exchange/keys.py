"""API keys that sign with a private key: Ed25519 (Binance's recommended type) or RSA.

``BINANCE_PRIVATE_KEY_FILE`` names a PEM file (PKCS#8, optionally encrypted with
``BINANCE_PRIVATE_KEY_PASSPHRASE``); it replaces the HMAC secret for every signed request.
Binance signs the same payload for all three types (the query string and the body); an Ed25519
or RSA signature is base64, URL-encoded in the request (python-binance does both, and sends a
POST body pre-encoded so the signature is not encoded twice).

The key's text never leaves this module but for the signer (``ops.logs.secret_values`` hides the
file's text and each line of its PEM body), and an unreadable key is reported by its path only.
"""

from __future__ import annotations

from pathlib import Path

from Crypto.PublicKey import ECC, RSA

from quantum_exec.core.errors import ConfigError

PrivateKey = ECC.EccKey | RSA.RsaKey


def load_private_key(path: Path, passphrase: str | None) -> PrivateKey:
    """The Ed25519 or RSA private key in ``path``; :class:`ConfigError` naming the setting otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"BINANCE_PRIVATE_KEY_FILE: cannot read {path} ({exc.strerror})") from None
    try:
        key = ECC.import_key(text, passphrase=passphrase)
    except (ValueError, IndexError, TypeError):
        pass
    else:
        if key.curve != "Ed25519":
            raise ConfigError(
                f"BINANCE_PRIVATE_KEY_FILE: {path} holds a {key.curve} key; Binance accepts Ed25519 or RSA"
            )
        return key
    try:
        return RSA.import_key(text, passphrase=passphrase)
    except (ValueError, IndexError, TypeError):
        encrypted = "ENCRYPTED" in text
        hint = " (an encrypted key: is BINANCE_PRIVATE_KEY_PASSPHRASE right?)" if encrypted else ""
        raise ConfigError(
            f"BINANCE_PRIVATE_KEY_FILE: {path} is not an Ed25519 or RSA private key in PEM{hint}"
        ) from None
