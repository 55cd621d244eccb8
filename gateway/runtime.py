"""What lives as long as the app: settings, the auth backend, the pools ops share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import httpx
import urllib3

from gateway.auth import SdkBackend, ToolsCoreBackend
from gateway.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    backend: SdkBackend | ToolsCoreBackend
    limiter: anyio.CapacityLimiter
    # Our own HTTP clients: async for uploads and SQL external links; blocking (read in worker
    # threads, 1 MiB at a time) for downloads, where it moves bytes several times faster.
    http: httpx.AsyncClient
    blocking_http: urllib3.PoolManager
    # Cancel callbacks of SQL statements being submitted or running, called at shutdown.
    running_statements: dict[object, Callable[[], Awaitable[None]]] = field(default_factory=dict)
    # Set when the server starts shutting down: new requests are refused with SHUTTING_DOWN.
    draining: bool = False

    @classmethod
    def create(cls, settings: Settings, backend: SdkBackend | ToolsCoreBackend) -> Runtime:
        timeout = httpx.Timeout(
            settings.sdk_http_timeout_seconds, connect=min(10, settings.sdk_http_timeout_seconds)
        )
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
        return cls(
            settings=settings,
            backend=backend,
            limiter=anyio.CapacityLimiter(settings.thread_limit),
            http=httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False),
            blocking_http=urllib3.PoolManager(
                maxsize=16,
                retries=False,
                timeout=urllib3.Timeout(connect=10, read=settings.sdk_http_timeout_seconds),
            ),
        )
