"""`python -m gateway`: serve on GATEWAY_HOST:GATEWAY_PORT (127.0.0.1:8765 by default), or on the
unix socket GATEWAY_UDS, in one process or GATEWAY_WORKERS of them."""

from __future__ import annotations

import os
import sys

from pydantic import ValidationError

from gateway.logs import logger
from gateway.serve import serve
from gateway.settings import Settings
from gateway.startup import missing_credentials, prepare


def main() -> int:
    # pyarrow's own allocator (mimalloc) keeps what a result's batches freed for reuse: ~25 MiB
    # more peak memory on a 10M-row NDJSON stream than the system allocator, for no measured
    # speed. Read when pyarrow is first imported (by the first query); a deployment may set it.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
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
