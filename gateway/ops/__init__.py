"""Every operation the gateway serves, one module per family; each family lists its own in `OPS`,
so a new op in a family touches that module only."""

from collections.abc import Callable
from typing import Any

from gateway.ops import catalog, files, identity, sql

ALL_OPS: list[Callable[..., Any]] = [*identity.OPS, *catalog.OPS, *files.OPS, *sql.OPS]
