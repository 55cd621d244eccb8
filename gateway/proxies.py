"""HTTP(S)_PROXY and NO_PROXY from the environment, for the clients that do not read them:
aiohttp (the lean path, and under httpx for uploads and external links: httpx reads the
environment only with its own transport) and urllib3 (downloads, the readiness probe).

The SDK's `requests` reads the environment itself; these follow the same rules:
the proxies are read once at start (a service's environment does not change under it), and
NO_PROXY is asked through urllib's own `proxy_bypass` (only when a proxy is set at all).
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Proxy:
    url: str  # without its credentials: the clients take those apart
    username: str | None = None
    password: str | None = None


class EnvironmentProxies:
    def __init__(self) -> None:
        self._proxies = urllib.request.getproxies()

    def for_url(self, url: str) -> Proxy | None:
        """The proxy `url` goes through, or None (none set, or NO_PROXY names its host)."""
        if not self._proxies:
            return None
        target = urllib.parse.urlsplit(url)
        proxy = self._proxies.get(target.scheme) or self._proxies.get("all")
        if not proxy or urllib.request.proxy_bypass(target.hostname or ""):
            return None
        parts = urllib.parse.urlsplit(proxy)
        if parts.username is None:
            return Proxy(proxy)
        netloc = parts.hostname or ""
        netloc += f":{parts.port}" if parts.port else ""
        return Proxy(
            parts._replace(netloc=netloc).geturl(),
            urllib.parse.unquote(parts.username),
            urllib.parse.unquote(parts.password or ""),
        )


def aiohttp_proxy(proxies: EnvironmentProxies, url: str) -> dict[str, Any]:
    """aiohttp's request arguments for `url`'s proxy: none unless the environment names one."""
    proxy = proxies.for_url(url)
    if proxy is None:
        return {}
    if proxy.username is None:
        return {"proxy": proxy.url}
    return {
        "proxy": proxy.url,
        "proxy_auth": aiohttp.BasicAuth(proxy.username, proxy.password or ""),
    }
