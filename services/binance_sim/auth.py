"""Binance's checks of who sends a request: the API key (-2014, -2015), and for a SIGNED request its
timestamp, recvWindow and HMAC-SHA256 / Ed25519 / RSA signature (-1021, -1022)."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from typing import Final

from aiohttp import web

from binance_sim import errors, signing
from binance_sim.errors import SimError
from binance_sim.params import Params

_API_KEY_RE: Final = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_MAX_RECV_WINDOW: Final = 60_000
_DEFAULT_RECV_WINDOW: Final = 5_000

Secret = bytes | signing.PublicKey


class Auth:
    """The keys the simulator knows (``secrets``: HMAC; ``public_keys``: Ed25519 / RSA PEM) and its clock."""

    def __init__(
        self, secrets: Mapping[str, str], public_keys: Mapping[str, str], clock: Callable[[], int]
    ) -> None:
        self._secrets = {k: v.encode() for k, v in secrets.items()}
        self._public_keys = {k: signing.load_public_key(pem) for k, pem in public_keys.items()}
        self._clock = clock

    def check_api_key(self, request: web.Request, ip: str) -> Secret:
        """The API key's HMAC secret, or its public key when it signs with Ed25519 / RSA."""
        return self.key_of(request.headers.get("X-MBX-APIKEY", ""), ip)

    def key_of(self, api_key: str, ip: str) -> Secret:
        """The HMAC secret or public key of ``api_key`` (-2014 / -2015 as Binance answers)."""
        if not _API_KEY_RE.match(api_key):
            raise SimError(-2014, "API-key format invalid.", 401)
        public = self._public_keys.get(api_key)
        secret = public if public is not None else self._secrets.get(api_key)
        if secret is None:
            raise SimError(-2015, f"Invalid API-key, IP, or permissions for action, request ip: {ip}", 401)
        return secret

    def authenticate(
        self, request: web.Request, params: Params, raw_query: bytes, raw_body: bytes, ip: str
    ) -> None:
        """A SIGNED REST request: its key, then its signature over query string + body."""
        secret = self.check_api_key(request, ip)
        payload = _without_signature(raw_query) + _without_signature(raw_body)
        self.verify_signed(secret, params, payload)

    def verify_signed(self, secret: Secret | None, params: Params, payload: bytes) -> None:
        """Binance's checks of a SIGNED request: timestamp, recvWindow, and the signature of
        ``payload`` (REST: query string + body; WebSocket API: the sorted params). ``secret``
        None: a WebSocket API request of a connection authenticated by ``session.logon``, which
        carries no signature (its timestamp and recvWindow are still checked)."""
        if not params.has("timestamp"):
            raise errors.mandatory("timestamp")
        try:
            timestamp = params.req_int("timestamp")
        except SimError:
            raise errors.mandatory("timestamp") from None
        recv_window = params.opt_int("recvWindow")
        if recv_window is None:
            recv_window = _DEFAULT_RECV_WINDOW
        elif recv_window > _MAX_RECV_WINDOW:
            raise errors.invalid_value("recvWindow")
        signature = params.opt_str("signature")
        if secret is None:
            valid = True
        elif signature is None:
            raise errors.mandatory("signature")
        elif isinstance(secret, bytes):
            expected = hmac.new(secret, payload, hashlib.sha256).hexdigest()
            valid = hmac.compare_digest(expected, signature.lower())
        else:
            valid = signing.verify(secret, payload, signature)
        if not valid:
            raise SimError(-1022, "Signature for this request is not valid.")
        now = self._clock()
        if timestamp >= now + 1000:
            raise SimError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - timestamp > recv_window:
            raise SimError(-1021, "Timestamp for this request is outside of the recvWindow.")


def _without_signature(raw: bytes) -> bytes:
    if b"signature=" not in raw:
        return raw
    return b"&".join(part for part in raw.split(b"&") if not part.startswith(b"signature="))
