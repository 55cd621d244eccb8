"""Start-up shared by the server and each worker process: settings, logging, the app."""

from __future__ import annotations

from gateway.app import GatewayApp, create_app
from gateway.logs import configure, logger
from gateway.settings import Settings


def missing_credentials(settings: Settings) -> str | None:
    """One start-up warning naming what to set when no call could succeed as configured."""
    if settings.databricks_host is None:
        return "DATABRICKS_HOST is not set: every op will answer 503 NOT_CONFIGURED"
    if settings.service_auth_type or settings.config_profile or settings.auth_mode == "user":
        return None
    return (
        "No Databricks credentials: set DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID and "
        "DATABRICKS_CLIENT_SECRET, or DATABRICKS_CONFIG_PROFILE (or GATEWAY_AUTH_MODE=user "
        "to act only for forwarded user tokens)"
    )


def prepare() -> tuple[Settings, GatewayApp | None]:
    """Settings, logging and the app, as the server and each worker process start them."""
    settings = Settings()
    configure(settings.log_level, settings.log_format)
    try:
        return settings, create_app(settings)
    except RuntimeError as exc:
        logger.error(str(exc))
        return settings, None
