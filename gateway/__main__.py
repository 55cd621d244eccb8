"""`python -m gateway`: serve on GATEWAY_HOST:GATEWAY_PORT (127.0.0.1:8765 by default)."""

from __future__ import annotations

import os
import sys

import uvicorn
from pydantic import ValidationError

from gateway.app import create_app
from gateway.logs import configure, logger
from gateway.settings import Settings


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"databricks-gateway: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    configure(settings.log_level)
    app_port = os.environ.get("DATABRICKS_APP_PORT")
    if app_port and app_port == str(settings.port):
        logger.error("GATEWAY_PORT must differ from DATABRICKS_APP_PORT (the front server's)")
        return 2
    if settings.secret is None:
        logger.warning("GATEWAY_SECRET is not set: any local process can call the gateway")
    if not settings.allowed_roots:
        logger.warning("GATEWAY_ALLOWED_ROOTS is empty: file ops may touch every volume")
    try:
        app = create_app(settings)
    except RuntimeError as exc:
        logger.error(str(exc))
        return 2
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,  # then in-flight work is cancelled (queries too)
        # Below the Node client's keep-alive so the client, not us, closes idle sockets first.
        timeout_keep_alive=30,
        h11_max_incomplete_event_size=64 * 1024,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
