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
from urllib.parse import quote, urlsplit

import orjson
from binance import AsyncClient
from binance.exceptions import BinanceAPIException, BinanceRequestException

from quantum_exec.exchange.endpoints import Endpoint
from quantum_exec.exchange.http_client import Http1Pool
from quantum_exec.exchange.http_parse import ResponseParser

CRLF = "\r\n"
EMPTY_BODY = f"Content-Length: 0{CRLF}"  # every parameter travels in the query string


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
        base = urlsplit(base_url.rstrip("/"))
        self._origin = f"{base.scheme}://{base.netloc}"
        self._prefix = base.path  # a base URL may carry a path before /fapi
        self._timeout_s = timeout_s
        self._on_headers = on_headers
        self._http = Http1Pool(base_url)
        # Every header but the request line, per method: python-binance's session headers (its
        # API key among them) and, for a method that may carry a body, an empty one.
        fixed = {
            "Host": self._http.authority,
            **client._get_headers(),
            "Accept-Encoding": "identity",  # no Accept-Encoding would allow any coding (RFC 9110)
            "Connection": "keep-alive",
        }
        head = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._heads = {
            method: f" HTTP/1.1{CRLF}{head}{'' if method == 'GET' else EMPTY_BODY}{CRLF}".encode()
            for method in ("GET", "POST", "PUT", "DELETE")
        }
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

    def target(self, ep: Endpoint, params: Mapping[str, str] | None) -> str:
        """The request target (path and query), signed when the endpoint is."""
        query = query_of(params) if params else ""
        if ep.signed:
            client = self._client
            stamp = f"timestamp={int(time.time() * 1000 + client.timestamp_offset)}"
            if client.REQUEST_RECVWINDOW:
                stamp += f"&recvWindow={client.REQUEST_RECVWINDOW}"
            query = f"{query}&{stamp}" if query else stamp
            query += "&signature=" + self.signature(query)
        path = f"{self._prefix}/fapi/v{ep.version}/{ep.path}"
        return f"{path}?{query}" if query else path

    def url(self, ep: Endpoint, params: Mapping[str, str] | None) -> str:
        """The request's URL, signed when the endpoint is."""
        return self._origin + self.target(ep, params)

    async def send(self, ep: Endpoint, params: Mapping[str, str] | None) -> Any:
        """One request; raises python-binance's exceptions, and http_client's without an answer."""
        method = ep.method.upper()
        data = f"{method} {self.target(ep, params)}".encode() + self._heads[method]
        reply = await self._http.request(data, self._timeout_s)
        self.received(reply)
        body = reply.body
        if not 200 <= reply.status < 300:
            raise BinanceAPIException(reply, reply.status, body.decode("utf-8", "replace"))
        if not body:
            return {}
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise BinanceRequestException(f"Invalid Response: {body[:200]!r}") from None

    def received(self, reply: ResponseParser) -> None:
        """Every response's headers go to the gateway (rate-limit usage), errors' too."""
        self._on_headers(reply.headers)

    async def close(self) -> None:
        """Close the kept-alive connections."""
        await self._http.close()
