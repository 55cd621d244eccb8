"""`python -m gateway`: serve on GATEWAY_HOST:GATEWAY_PORT (127.0.0.1:8765 by default), or on the
unix socket GATEWAY_UDS, in one process or GATEWAY_WORKERS of them."""

from __future__ import annotations

import os
import sys

from fastapi import FastAPI
from pydantic import ValidationError

from gateway.app import create_app
from gateway.logs import configure, logger
from gateway.serve import serve
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


def prepare() -> tuple[Settings, FastAPI | None]:
    """Settings, logging and the app, as the server and each worker process start them."""
    settings = Settings()
    configure(settings.log_level, settings.log_format)
    try:
        return settings, create_app(settings)
    except RuntimeError as exc:
        logger.error(str(exc))
        return settings, None


def main() -> int:
    try:
        Settings()
    except ValidationError as exc:
        print(f"databricks-gateway: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    settings, app = prepare()
    app_port = os.environ.get("DATABRICKS_APP_PORT")
    if settings.uds is None and app_port and app_port == str(settings.port):
        logger.error("GATEWAY_PORT must differ from DATABRICKS_APP_PORT (the front server's)")
        return 2
    if settings.secret is None:
        logger.warning("GATEWAY_SECRET is not set: any local process can call the gateway")
    if missing := missing_credentials(settings):
        logger.warning(missing)
    if not settings.allowed_roots:
        logger.warning("GATEWAY_ALLOWED_ROOTS is empty: file ops may touch every volume")
    if app is None:
        return 2
    return serve(settings, app)


if __name__ == "__main__":
    sys.exit(main())
