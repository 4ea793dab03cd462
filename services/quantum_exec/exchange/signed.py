"""The REST request path: one pre-built query string, signed once, on python-binance's one session.

python-binance's generic ``AsyncClient._request`` builds each request the long way: the params
dict is copied, sorted into a list of pairs, joined for the signature, joined again for the URL
(GET) or turned into an aiohttp ``FormData`` (POST/DELETE), and the reply is read as text and then
parsed again by aiohttp's ``json()``. On the critical path that is client CPU spent twice per
intent (the entry, then the protective orders). Here the query string is built once, in the
caller's order (Binance does not require sorted parameters), the signature is computed over
exactly that string and appended, every parameter travels in the query string (Binance accepts
them there for every method: "totalParams is the query string concatenated with the request
body"), and the reply is parsed once with orjson.

Errors keep python-binance's types (:class:`BinanceAPIException` for a non-2xx answer,
:class:`BinanceRequestException` for an unreadable one), so the gateway's error mapping is the
same for both paths. The signing keys are python-binance's: the HMAC secret, or the Ed25519 / RSA
private key set on the client.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import yarl
from binance import AsyncClient
from binance.exceptions import BinanceAPIException, BinanceRequestException

from quantum_exec.exchange.endpoints import Endpoint


def query_of(params: Mapping[str, str]) -> str:
    """``k=v&...`` in the given order, each value percent-encoded (nothing is left unsafe)."""
    return "&".join(f"{name}={quote(str(value), safe='')}" for name, value in params.items())


class RestSender:
    """Sends one REST request to the futures API and returns the parsed reply."""

    def __init__(
        self,
        client: AsyncClient,
        base_url: str,
        *,
        timeout_s: float,
        on_headers: Callable[[Mapping[str, str]], None],
    ) -> None:
        self._client = client
        self._root = base_url.rstrip("/") + "/fapi/v"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._on_headers = on_headers
        self._headers = {"X-MBX-APIKEY": client.API_KEY} if client.API_KEY else {}
        secret = client.API_SECRET or ""
        # The keyed HMAC state, copied per request (the key schedule is computed once).
        self._mac = hmac.new(secret.encode(), digestmod=hashlib.sha256) if secret else None

    def signature(self, query: str) -> str:
        """The signature of ``query`` as it goes into the URL."""
        client = self._client
        if client.PRIVATE_KEY:
            raw = client._rsa_signature(query) if client._is_rsa else client._ed25519_signature(query)
            return quote(str(raw), safe="")
        if self._mac is None:
            raise BinanceRequestException("no API secret or private key to sign with")
        mac = self._mac.copy()
        mac.update(query.encode())
        return mac.hexdigest()

    def url(self, ep: Endpoint, params: Mapping[str, str] | None) -> str:
        """The request's URL, signed when the endpoint is."""
        query = query_of(params) if params else ""
        if ep.signed:
            client = self._client
            stamp = f"timestamp={int(time.time() * 1000 + client.timestamp_offset)}"
            if client.REQUEST_RECVWINDOW:
                stamp += f"&recvWindow={client.REQUEST_RECVWINDOW}"
            query = f"{query}&{stamp}" if query else stamp
            query += "&signature=" + self.signature(query)
        root = f"{self._root}{ep.version}/{ep.path}"
        return f"{root}?{query}" if query else root

    async def send(self, ep: Endpoint, params: Mapping[str, str] | None) -> Any:
        """One request; raises python-binance's exceptions, and aiohttp's on transport errors."""
        url = yarl.URL(self.url(ep, params), encoded=True)
        request = self._client.session.request
        async with request(ep.method.upper(), url, headers=self._headers, timeout=self._timeout) as response:
            self.received(response)
            body = await response.read()
            if not 200 <= response.status < 300:
                raise BinanceAPIException(response, response.status, body.decode("utf-8", "replace"))
            if not body:
                return {}
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError:
                raise BinanceRequestException(f"Invalid Response: {body[:200]!r}") from None

    def received(self, response: aiohttp.ClientResponse) -> None:
        """Every response's headers go to the gateway (rate-limit usage) before it is read."""
        self._on_headers(response.headers)
