"""Raw HTTP to Databricks that is not an SDK call: the lean path for simple JSON reads, and the
readiness probe.

**The lean path.** `me`, the Unity Catalog listings, a statement's polls and its chunks' links
are one GET each (per page). Through the SDK each costs a worker-thread hop plus `requests` and
urllib3 layers; here it is one pooled aiohttp call on the event loop (aiohttp, not httpx: its C
parser made a call cost ~0.1 ms of CPU where httpx's pure-Python stack cost ~0.5 ms, measured
against the fake). What the SDK decides stays the SDK's:

- auth headers come from the identity's own `Config.authenticate()` on every call (PAT, OAuth
  M2M with its token refresh, a tools-core client alike); the client itself from the auth
  backend, built in a worker thread the first time an identity is seen;
- error responses are parsed by the SDK's own error parser into its own exception classes, so
  `gateway.errors.translate` maps them exactly as it maps SDK calls;
- retries follow the SDK's rule: 429/503 after `Retry-After` (+ jitter), connection failures and
  timeouts after `min(10, attempt)` s, within `GATEWAY_SDK_RETRY_TIMEOUT_SECONDS`; a spent
  budget raises `TimeoutError` from the last failure, as the SDK does (we stop as soon as the
  next wait would pass the budget rather than sleep into it: the same answer, sooner);
- pagination and query parameters are the SDK methods' own (`max_results=0` where it sends it).

The answers stay the API's JSON: the ops type them once, into their results. The SDK's
dataclasses in between (`from_dict`) cost ~10% of a `me` call's CPU in the gateway for nothing
(scratch A/B against the fake at 0 ms, 12 interleaved pairs: `me` p50 0.965x, CPU 0.90x;
`list_catalogs` p50 0.935x, CPU 0.92x). One difference is the lean path's: an enum value the
pinned SDK does not know yet (a new catalog type) is passed on, where the SDK gives null.

Ops call `Upstream`, never HTTP. `SdkUpstream` answers the same calls through the SDK itself
(its dataclasses turned back into the API's JSON, `as_dict`): `GATEWAY_LEAN_UPSTREAM=false`
selects it, and the differential test runs every op through both.
"""

from __future__ import annotations

import importlib.util
import random
import sys
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar
from urllib.parse import urljoin

import aiohttp
import anyio
import anyio.to_thread
import orjson
import requests
import urllib3
from databricks.sdk import WorkspaceClient
from databricks.sdk._base_client import _BaseClient
from databricks.sdk.config import Config
from databricks.sdk.core import _AddDebugErrorCustomizer
from databricks.sdk.errors.base import DatabricksError
from databricks.sdk.errors.parser import _Parser

from gateway.answers import json_object
from gateway.auth import current_auth, get_workspace_client
from gateway.errors import UpstreamBadResponse
from gateway.logs import add_upstream_time
from gateway.proxies import EnvironmentProxies, aiohttp_proxy
from gateway.retry_after import seconds_to_wait
from gateway.settings import Settings
from gateway.transport import aiohttp_session

PROBE_PATH = "/api/2.0/preview/scim/v2/Me"
T = TypeVar("T")

# httpcore runs `import sniffio` on every request to learn the async library; without sniffio
# installed (anyio 4 does not need it) each try searches sys.path and fails, ~200 µs a request.
# A None entry makes that import fail at once, with the same outcome (httpcore assumes asyncio).
if importlib.util.find_spec("sniffio") is None:
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]


class Upstream(Protocol):
    """The Databricks reads ops make, each answer as the REST API's JSON (what the SDK's
    `as_dict` gives): the ops type it once, into their results, whichever path read it."""

    async def me(self) -> dict[str, Any]: ...
    async def catalogs(self) -> list[dict[str, Any]]: ...
    async def schemas(self, catalog: str) -> list[dict[str, Any]]: ...
    async def volumes(self, catalog: str, schema: str) -> list[dict[str, Any]]: ...
    async def read(self, client: WorkspaceClient, path: str) -> dict[str, Any]:
        """One GET of a JSON object (`{}` for an empty body) as `client`'s identity."""
        ...


# --- through the SDK ---------------------------------------------------------------------------


class SdkUpstream:
    """The SDK's own methods, each in a worker thread (the reference the lean path must equal)."""

    def __init__(self, limiter: anyio.CapacityLimiter) -> None:
        self._limiter = limiter

    async def _run(self, call: Callable[[WorkspaceClient], T]) -> T:
        return await self._in_thread(lambda: call(get_workspace_client()))

    async def _in_thread(self, call: Callable[[], T]) -> T:
        """`call` in a worker thread, its time counted to the request's `upstream_ms` (on the
        loop: the worker thread inherits this task's contextvars, the identity included)."""
        started = time.perf_counter()
        try:
            return await anyio.to_thread.run_sync(
                call, limiter=self._limiter, abandon_on_cancel=True
            )
        finally:
            add_upstream_time(time.perf_counter() - started)

    async def me(self) -> dict[str, Any]:
        return await self._run(lambda w: w.current_user.me().as_dict())

    async def catalogs(self) -> list[dict[str, Any]]:
        return await self._run(lambda w: [c.as_dict() for c in w.catalogs.list()])

    async def schemas(self, catalog: str) -> list[dict[str, Any]]:
        return await self._run(
            lambda w: [s.as_dict() for s in w.schemas.list(catalog_name=catalog)]
        )

    async def volumes(self, catalog: str, schema: str) -> list[dict[str, Any]]:
        return await self._run(
            lambda w: [
                v.as_dict() for v in w.volumes.list(catalog_name=catalog, schema_name=schema)
            ]
        )

    async def read(self, client: WorkspaceClient, path: str) -> dict[str, Any]:
        body = await self._in_thread(lambda: client.api_client.do("GET", path))
        return json_object(body, f"GET {path}")


# --- the lean path -----------------------------------------------------------------------------


class LeanUpstream:
    """The same reads as one pooled async HTTP call each, on the event loop."""

    def __init__(self, settings: Settings, limiter: anyio.CapacityLimiter) -> None:
        self._budget = float(settings.sdk_retry_timeout_seconds)
        self._answer_limit = settings.max_chunk_bytes
        self._limiter = limiter  # only for building an identity's client the first time
        self._pool_size = settings.max_concurrent_per_op
        # As the SDK's requests: connect within min(10, t), then each read within t.
        http_timeout = settings.sdk_http_timeout_seconds
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=min(10, http_timeout), sock_read=http_timeout
        )
        self._session: aiohttp.ClientSession | None = None
        # HTTP(S)_PROXY / NO_PROXY as the SDK's `requests` honours them: the session itself
        # does not look at the environment (aiohttp would then read ~/.netrc and ask for the
        # proxy in a worker thread on every request).
        self._proxies = EnvironmentProxies()
        # Per client: the headers that never change (the SDK, too, computes them once).
        self._fixed: weakref.WeakKeyDictionary[Config, dict[str, str]] = weakref.WeakKeyDictionary()

    @property
    def http(self) -> aiohttp.ClientSession:
        # Made on first use: an aiohttp session belongs to the running event loop.
        if self._session is None:
            self._session = aiohttp_session(self._pool_size, timeout=self._timeout)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    # The raw answers, not the SDK's dataclasses: their from_dict cost the most of the gateway's
    # own time on a `me` call whose CPU had idled (scratch, fake at 20 ms: 205 of 756 µs from
    # Databricks' answer to ours).
    async def me(self) -> dict[str, Any]:
        return await self.get(PROBE_PATH)

    async def catalogs(self) -> list[dict[str, Any]]:
        return await self.pages("/api/2.1/unity-catalog/catalogs", "catalogs", {"max_results": 0})

    async def schemas(self, catalog: str) -> list[dict[str, Any]]:
        query = {"catalog_name": catalog, "max_results": 0}
        return await self.pages("/api/2.1/unity-catalog/schemas", "schemas", query)

    async def volumes(self, catalog: str, schema: str) -> list[dict[str, Any]]:
        query = {"catalog_name": catalog, "schema_name": schema}  # the SDK sends no max_results
        return await self.pages("/api/2.1/unity-catalog/volumes", "volumes", query)

    async def pages(self, path: str, key: str, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Every item of a paginated list, page after page, as the SDK's list methods read it."""
        items: list[dict[str, Any]] = []
        query = dict(query)
        while True:
            page = await self.get(path, query)
            listed = page.get(key, [])
            if not isinstance(listed, list):
                raise UpstreamBadResponse(f"GET {path} answered {key} that are not a list")
            items += listed
            token = page.get("next_page_token")
            if not token:
                return items
            if not isinstance(token, str):
                raise UpstreamBadResponse(f"GET {path} answered a next_page_token not a string")
            query["page_token"] = token

    async def read(self, client: WorkspaceClient, path: str) -> dict[str, Any]:
        return await self._get(client.config, path, None)

    async def get(self, path: str, query: dict[str, Any] | None = None) -> dict[str, Any]:
        """One GET as the request's identity, with the SDK's retries; the decoded JSON object
        (`{}` for an empty body)."""
        return await self._get(await self._config(), path, query)

    async def _get(self, config: Config, path: str, query: dict[str, Any] | None) -> dict[str, Any]:
        budget = RetryBudget(self._budget)
        while True:
            try:
                return await self._attempt(config, path, query)
            except Exception as exc:
                await anyio.sleep(budget.wait_after(exc, retry_wait))

    async def _attempt(
        self, config: Config, path: str, query: dict[str, Any] | None
    ) -> dict[str, Any]:
        headers = {**self._fixed_headers(config), **config.authenticate()}
        url = f"{config.host}{path}"
        started = time.perf_counter()
        try:
            async with self.http.get(
                url,
                params=query,
                headers=headers,
                allow_redirects=False,
                **aiohttp_proxy(self._proxies, url),
            ) as response:
                content = await _bounded_body(response, self._answer_limit, path)
                status = response.status
        finally:
            add_upstream_time(time.perf_counter() - started)
        if status >= 400:
            raise sdk_error(config, response, content)
        if status >= 300:
            raise redirect_error(response, path)
        if not content:
            return {}
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise UpstreamBadResponse(f"GET {path} answered {status}, not JSON") from None
        return json_object(body, f"GET {path}")

    async def _config(self) -> Config:
        identity, backend = current_auth()
        client = backend.cached_client(identity)
        if client is None:
            # Building a client probes the host (and may fetch an OAuth token): not on the loop.
            client = await anyio.to_thread.run_sync(_first_client, limiter=self._limiter)
        return client.config

    def _fixed_headers(self, config: Config) -> dict[str, str]:
        fixed = self._fixed.get(config)
        if fixed is None:
            fixed = {"Accept": "application/json", "User-Agent": config.user_agent}
            if config.workspace_id:
                fixed["X-Databricks-Workspace-Id"] = config.workspace_id
            self._fixed[config] = fixed
        return fixed


async def _bounded_body(response: aiohttp.ClientResponse, limit: int, path: str) -> bytes:
    """The whole answer, of `limit` bytes at most: what a Content-Length (held to by aiohttp)
    announces is checked before a byte is read; a body of unknown or coded length as it comes."""
    length = response.content_length
    if length is not None and "Content-Encoding" not in response.headers:
        if length > limit:
            raise _answer_too_large(path, limit)
        return await response.read()
    pieces: list[bytes] = []
    size = 0
    async for piece in response.content.iter_any():
        size += len(piece)
        if size > limit:
            raise _answer_too_large(path, limit)
        pieces.append(piece)
    return b"".join(pieces)


def _answer_too_large(path: str, limit: int) -> UpstreamBadResponse:
    return UpstreamBadResponse(f"GET {path} answered over GATEWAY_MAX_CHUNK_BYTES ({limit} bytes)")


def _first_client() -> WorkspaceClient:
    client = get_workspace_client()
    client.config.authenticate()  # a first OAuth token is fetched here, off the event loop
    return client


class RetryBudget:
    """Attempts within a retry budget, the SDK's way: after a failure, how long to wait before
    the next attempt, or the failure itself when `policy` says it is not to be retried, or
    `TimeoutError` from it when the wait would pass the budget (the SDK's outcome, sooner:
    it does not sleep into a certain failure)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.attempt = 1

    def wait_after(
        self, exc: Exception, policy: Callable[[BaseException, int], float | None]
    ) -> float:
        wait = policy(exc, self.attempt)
        if wait is None:
            raise exc
        if time.monotonic() + wait >= self.deadline:
            raise TimeoutError(f"Timed out after {self.seconds:g} s") from exc
        self.attempt += 1
        return wait


# What the SDK retries as requests' ConnectionError and Timeout: a refused or dropped
# connection, a body cut short, a connect or read timeout (aiohttp's are ClientConnectionErrors).
TRANSPORT_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)


def retry_wait(exc: BaseException, attempt: int) -> float | None:
    """Seconds to wait before the next attempt, or None when the SDK would not retry `exc`."""
    if isinstance(exc, DatabricksError):
        if exc.retry_after_secs is not None:  # 429 and 503: throttled by the platform
            return seconds_to_wait(exc.retry_after_secs) + random.random()  # noqa: S311 - jitter
        if _BaseClient._is_retryable(exc) is None:  # the SDK's transient-message list
            return None
    elif not isinstance(exc, TRANSPORT_ERRORS):  # requests' ConnectionError and Timeout
        return None
    return min(10, attempt) + random.random()  # noqa: S311 - jitter


def sdk_error(config: Config, response: aiohttp.ClientResponse, content: bytes) -> DatabricksError:
    """The exception the SDK raises for this error response, from the SDK's own parser: the
    same class, message, error code and Retry-After, so the error boundary cannot tell."""
    as_requests = _as_requests(response, response.status, content, str(response.url))
    parser = _Parser(extra_error_customizers=[_AddDebugErrorCustomizer(config)])
    error = parser.get_api_error(as_requests)
    assert error is not None  # always, for a status >= 400
    return error


def redirect_error(response: aiohttp.ClientResponse, path: str) -> Exception:
    """Databricks' API never redirects; a login page in front of it does. Not followed (the
    request carries credentials). The SDK follows it, and reads the login page of a Private Link
    workspace called from outside its network as PrivateLinkValidationError: the same here."""
    try:
        target = urljoin(str(response.url), response.headers.get("Location", ""))
    except ValueError:  # a Location that is no URL
        target = str(response.url)
    landed = _as_requests(response, 200, b"", target)  # where the SDK would land
    private_link = _Parser().get_api_error(landed)
    if private_link is not None:
        return private_link
    return UpstreamBadResponse(f"GET {path} answered a redirect ({response.status})")


def _as_requests(
    response: aiohttp.ClientResponse, status: int, content: bytes, url: str
) -> requests.Response:
    """`response` as the requests.Response the SDK's error parser reads."""
    as_requests = requests.Response()
    as_requests.status_code = status
    as_requests.reason = response.reason or ""
    as_requests.headers.update(response.headers)
    as_requests._content = content
    as_requests.url = url
    as_requests.request = requests.Request("GET", str(response.request_info.url)).prepare()
    return as_requests


def make_upstream(settings: Settings, limiter: anyio.CapacityLimiter) -> Upstream:
    if settings.lean_upstream:
        return LeanUpstream(settings, limiter)
    return SdkUpstream(limiter)


# --- the readiness probe -----------------------------------------------------------------------


def unreachable_reason(pool: urllib3.PoolManager, host: str, timeout: float) -> str | None:
    """None when `host` answers HTTP within `timeout`, else why it does not.

    Asks "does anything answer at DATABRICKS_HOST?" without credentials: any HTTP status (a 401
    included) means reachable; a transport error names why not, in words an operator can act
    on (refused, name not resolved, no answer in time).
    """
    try:
        response = pool.request(
            "GET",
            f"{host.rstrip('/')}{PROBE_PATH}",
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            retries=False,
            redirect=False,
            preload_content=False,
        )
    except urllib3.exceptions.HTTPError as exc:
        return f"Databricks at {host} is unreachable: {_cause(exc)}"
    response.close()  # the status does not matter: something answered
    return None


def _cause(exc: urllib3.exceptions.HTTPError) -> str:
    if isinstance(exc, urllib3.exceptions.NameResolutionError):
        return "its name does not resolve"
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return "the connection was refused or failed"
    if isinstance(exc, urllib3.exceptions.TimeoutError):
        return "no answer within the probe timeout"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return "the TLS handshake failed"
    return type(exc).__name__
