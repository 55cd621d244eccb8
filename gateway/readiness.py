"""Readiness: can this gateway do Databricks work right now, and if not, why not.

In order: a host is configured; something answers HTTP there (`gateway.upstream`'s probe,
without credentials); a service identity is configured (or the gateway is user-only); its client
builds; and with `deep`, SCIM Me answers for it. Each step has a short budget, so /ready answers
within a few seconds even when Databricks cannot be reached.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import anyio.to_thread

from gateway.errors import GatewayError, translate
from gateway.logs import logger
from gateway.runtime import Runtime
from gateway.upstream import unreachable_reason

READY_TIMEOUT_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 3.0  # connect and read each


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str | None = None
    identity: str | None = None  # "user-only" when no service identity is needed


async def check(runtime: Runtime, deep: bool) -> Readiness:
    settings = runtime.settings
    if settings.databricks_host is None:
        return Readiness(False, "DATABRICKS_HOST is not configured.")
    pool = runtime.download_http.for_url(settings.databricks_host)
    reason = await anyio.to_thread.run_sync(
        unreachable_reason, pool, settings.databricks_host, PROBE_TIMEOUT_SECONDS
    )
    if reason is not None:
        return Readiness(False, reason)
    if settings.service_auth_type is None and not settings.config_profile:
        if settings.auth_mode == "user":
            return Readiness(True, identity="user-only")
        return Readiness(False, "No service identity is configured.")
    return await _service_identity(runtime, deep)


async def _service_identity(runtime: Runtime, deep: bool) -> Readiness:
    try:
        with anyio.fail_after(READY_TIMEOUT_SECONDS):
            client = await anyio.to_thread.run_sync(
                runtime.backend.service_client, abandon_on_cancel=True
            )
            if deep:
                await anyio.to_thread.run_sync(client.current_user.me, abandon_on_cancel=True)
    except TimeoutError:
        return Readiness(False, "Databricks did not answer within the readiness timeout.")
    except GatewayError as exc:
        return Readiness(False, exc.message)
    except Exception as exc:
        mapped = translate(exc)
        logger.warning("not ready", extra={"error": type(exc).__name__})
        return Readiness(False, mapped.message if mapped else "The service identity is unusable.")
    return Readiness(True)
