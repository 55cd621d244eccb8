"""What lives as long as the app: settings, the auth backend, the pools ops share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import urllib3
from cachetools import TTLCache

from gateway.auth import SdkBackend, ToolsCoreBackend
from gateway.metrics import Metrics
from gateway.proxies import EnvironmentProxies, Proxy
from gateway.registry import Injected
from gateway.settings import Settings
from gateway.statements import Cancel, ShapeMemory
from gateway.transport import AiohttpTransport
from gateway.upstream import LeanUpstream, Upstream, make_upstream

if TYPE_CHECKING:
    from gateway.telemetry import Telemetry

# Ops that move file bytes: each has its own pool and admission cap, so slow transfers can only
# exhaust their own slots, never the API calls' threads or another kind of transfer.
TRANSFER_OPS = frozenset({"read_file", "write_file"})

# A running statement's cancel callback; a coroutine function, as anyio's start_soon wants.


@dataclass
class Runtime(Injected):
    settings: Settings
    backend: SdkBackend | ToolsCoreBackend
    # Worker threads for blocking SDK calls.
    limiter: anyio.CapacityLimiter
    # Worker threads for download reads (urllib3 in threads moves bytes several times faster
    # than an async client); separate, so slow downloads never take the SDK's threads.
    download_limiter: anyio.CapacityLimiter
    download_http: DownloadPools
    upload_http: httpx.AsyncClient
    links_http: httpx.AsyncClient  # SQL external links: presigned, never our Authorization
    upstream: Upstream  # the JSON reads: the lean path, or the SDK's (GATEWAY_LEAN_UPSTREAM)
    # In-flight requests per op; a full op answers 503 BUSY at once instead of queueing.
    admission: dict[str, anyio.CapacityLimiter] = field(default_factory=dict)
    # Cancel callbacks of SQL statements being submitted or running, called at shutdown.
    running_statements: dict[object, Cancel] = field(default_factory=dict)
    # Set when the server starts shutting down: new requests are refused with SHUTTING_DOWN.
    draining: bool = False
    metrics: Metrics = field(default_factory=Metrics)
    telemetry: Telemetry | None = None  # GATEWAY_OTEL=1
    # The result shape each warehouse accepted (after refusals), and who submitted which
    # long-running statement (submit_query): a digest of the identity, for a day at most.
    sql_shapes: ShapeMemory = field(default_factory=ShapeMemory)
    statement_owners: TTLCache[str, str] = field(
        default_factory=lambda: TTLCache(maxsize=100_000, ttl=86_400)
    )

    @classmethod
    def create(cls, settings: Settings, backend: SdkBackend | ToolsCoreBackend) -> Runtime:
        transfers = settings.max_concurrent_transfers
        timeout = httpx.Timeout(
            settings.sdk_http_timeout_seconds, connect=min(10, settings.sdk_http_timeout_seconds)
        )

        def async_client(size: int) -> httpx.AsyncClient:
            # httpx's API over aiohttp's buffered reads and writes (transport.py, which also
            # routes through the environment's proxy: httpx does not with a custom transport).
            return httpx.AsyncClient(transport=AiohttpTransport(size), timeout=timeout)

        limiter = anyio.CapacityLimiter(settings.thread_limit)
        return cls(
            settings=settings,
            backend=backend,
            limiter=limiter,
            download_limiter=anyio.CapacityLimiter(transfers),
            download_http=DownloadPools(
                maxsize=transfers,
                retries=False,
                timeout=urllib3.Timeout(connect=10, read=settings.sdk_http_timeout_seconds),
            ),
            upload_http=async_client(transfers),
            links_http=async_client(32),
            telemetry=_telemetry(settings),
            upstream=make_upstream(settings, limiter),
        )

    def admission_for(self, op: str) -> anyio.CapacityLimiter:
        limiter = self.admission.get(op)
        if limiter is None:
            size = self.settings.max_concurrent_transfers
            if op not in TRANSFER_OPS:
                size = self.settings.max_concurrent_per_op
            limiter = self.admission.setdefault(op, anyio.CapacityLimiter(size))
        return limiter

    async def aclose(self) -> None:
        await self.upload_http.aclose()
        await self.links_http.aclose()
        if isinstance(self.upstream, LeanUpstream):
            await self.upstream.aclose()
        self.download_http.clear()
        if self.telemetry is not None:
            await anyio.to_thread.run_sync(self.telemetry.shutdown)


class DownloadPools:
    """urllib3 pools for raw downloads and the readiness probe: a direct one, and one per proxy
    the environment names (urllib3 does not read HTTP(S)_PROXY / NO_PROXY itself)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._proxies = EnvironmentProxies()
        self._direct = urllib3.PoolManager(**options)
        self._through: dict[Proxy, urllib3.ProxyManager] = {}

    def for_url(self, url: str) -> urllib3.PoolManager:
        proxy = self._proxies.for_url(url)
        if proxy is None:
            return self._direct
        pool = self._through.get(proxy)
        if pool is None:
            credentials = f"{proxy.username}:{proxy.password}" if proxy.username else None
            headers = urllib3.make_headers(proxy_basic_auth=credentials) if credentials else None
            pool = urllib3.ProxyManager(proxy.url, proxy_headers=headers, **self._options)
            self._through[proxy] = pool
        return pool

    def clear(self) -> None:
        self._direct.clear()
        for pool in self._through.values():
            pool.clear()


def _telemetry(settings: Settings) -> Telemetry | None:
    if not settings.otel:
        return None
    # Imported only when enabled: without GATEWAY_OTEL the OpenTelemetry SDK is never loaded.
    from gateway.telemetry import Telemetry

    return Telemetry.from_environment()
