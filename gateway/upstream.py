"""Raw HTTP to Databricks that is not an SDK call: today, the readiness probe.

The probe asks "does anything answer at DATABRICKS_HOST?" without credentials: any HTTP status
(a 401 included) means reachable; a transport error names why not, in words an operator can act
on (refused, name not resolved, no answer in time).
"""

from __future__ import annotations

import urllib3

PROBE_PATH = "/api/2.0/preview/scim/v2/Me"


def unreachable_reason(pool: urllib3.PoolManager, host: str, timeout: float) -> str | None:
    """None when `host` answers HTTP within `timeout`, else why it does not."""
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
