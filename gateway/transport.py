"""An httpx transport that sends through aiohttp: httpx's client API (and respx in the tests),
aiohttp's C parser and buffered reads and writes underneath. Also how every aiohttp session of
the gateway is made (`aiohttp_session`, here and on the lean path) and its one TLS context.

For the SQL external links and the Files API uploads. Through httpcore each read or write is an
h11 event and an anyio cancel scope, and each read a pause/resume of the socket. Scratch
benchmarks against the fake: eleven 4 MiB external links (a 1M-row Arrow result), four at a
time with 20 ms to first byte each, took 139 ms instead of 205 ms; 512 MiB uploads, eight
interleaved pairs, cost the gateway 1.28 CPU-s per GiB instead of 1.47 (median of the pairs'
ratios 0.86x) and took 1.46 s per GiB instead of 1.64.

Errors are aiohttp's own; the error boundary (`gateway.errors`) maps them as it maps the lean
path's, except a request body's own error (an upload over its limit, a caller gone quiet),
which is raised as it was. HTTP(S)_PROXY / NO_PROXY are asked per request, as on the lean path
(httpx reads the environment only for its own transport).
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx

from gateway.proxies import EnvironmentProxies, aiohttp_proxy


def aiohttp_session(max_connections: int, **options: Any) -> aiohttp.ClientSession:
    """An aiohttp session as every one of ours is made (call it on the running event loop):
    the process's one verifying TLS context, no environment read by aiohttp itself (proxies are
    asked per request through `proxies.aiohttp_proxy`; no ~/.netrc), and no cookie jar: one pool
    serves every identity, so nothing may pass from one request to another."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_connections, ssl=tls_context()),
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        **options,
    )


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every HTTP client of the process (httpx and aiohttp):
    loading the CA bundle costs tens of milliseconds per client otherwise, and a context is
    safe to share."""
    return httpx.create_ssl_context()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Request and response bodies both stream."""

    def __init__(self, max_connections: int) -> None:
        self._max_connections = max_connections
        self._proxies = EnvironmentProxies()
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        # Made on first use: an aiohttp session belongs to the running event loop.
        if self._session is None:
            # httpx decodes content codings, as it does for its own transport.
            self._session = aiohttp_session(self._max_connections, auto_decompress=False)
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        headers = request.headers.copy()
        # A body of unknown length: aiohttp chunks it itself (and would not see a header).
        chunked = headers.pop("transfer-encoding", None) is not None
        has_body = chunked or headers.get("content-length", "0") != "0"
        body = _Pieces(request.stream) if has_body else None
        url = str(request.url)
        try:
            response = await self.session.request(
                request.method,
                url,
                headers=list(headers.multi_items()),
                data=body,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=timeout.get("connect"), sock_read=timeout.get("read")
                ),
                **aiohttp_proxy(self._proxies, url),
            )
        except Exception:
            # aiohttp reports a body that failed as a connection error; the body's own error
            # (an upload over its limit, a caller gone quiet) is the one to answer with.
            if body is not None and body.error is not None:
                raise body.error from None
            raise
        return httpx.Response(
            status_code=response.status,
            headers=list(response.raw_headers),
            stream=_Body(response),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Pieces:
    """A request body for aiohttp, keeping the error its source raised."""

    def __init__(self, stream: httpx.SyncByteStream | httpx.AsyncByteStream) -> None:
        assert isinstance(stream, httpx.AsyncByteStream)  # an AsyncClient's request
        self._stream = stream
        self.error: Exception | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for piece in self._stream:
                yield piece
        except Exception as exc:
            self.error = exc
            raise


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # Whatever has arrived, in one piece: no fixed read size to slice it into.
        async for piece in self._response.content.iter_any():
            yield piece

    async def aclose(self) -> None:
        # A body read to its end returns the connection to the pool; one left unread closes it.
        self._response.release()
