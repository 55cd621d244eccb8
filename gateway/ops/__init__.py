"""Every operation the gateway serves, one module per family."""

from collections.abc import Callable
from typing import Any

from gateway.ops import catalog, files, identity, sql

ALL_OPS: list[Callable[..., Any]] = [
    identity.me,
    catalog.list_catalogs,
    catalog.list_schemas,
    catalog.list_volumes,
    catalog.list_tables,
    catalog.ensure_volume,
    files.list_directory,
    files.create_directory,
    files.file_info,
    files.read_file,
    files.write_file,
    files.delete_file,
    sql.run_query,
    sql.submit_query,
    sql.query_status,
    sql.fetch_result,
    sql.cancel_query,
]
