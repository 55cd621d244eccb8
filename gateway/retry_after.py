"""Retry-After as Databricks' answers give it, made safe to wait on.

The SDK reads the header as an int and sleeps that plus up to a second of jitter: a negative
value (a broken proxy's; not one Databricks sends) made that sleep raise ValueError, a 502
through the SDK and a 500 in the gateway's own retry loops. A negative Retry-After means "now".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests
    from databricks.sdk import WorkspaceClient


def seconds_to_wait(retry_after_secs: float) -> float:
    """What to wait for a Retry-After the SDK parsed: never below zero."""
    return max(0.0, float(retry_after_secs))


def with_sane_retry_after(client: WorkspaceClient) -> WorkspaceClient:
    """`client`, whose SDK reads a negative Retry-After as 0."""
    # The SDK's requests.Session (databricks-sdk < 0.200, as pinned; see deadlines.py): a
    # response hook runs before the SDK's error parser reads the header.
    hooks = client.api_client._api_client._session.hooks.setdefault("response", [])
    if _non_negative not in hooks:
        hooks.append(_non_negative)
    return client


def _non_negative(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
    value = (response.headers.get("Retry-After") or "").strip()
    if value.startswith("-") and value[1:].isdigit():
        response.headers["Retry-After"] = "0"
    return response
