"""What the fake workspace's API areas share: its records, its users and its state's shape.

`FakeWorkspace` (workspace.py) holds the state and serves HTTP; each API area is a mixin over
`WorkspaceState` in its own module — identity.py (SCIM, OAuth), catalog.py (Unity Catalog),
files.py (Files API) — and warehouse.py serves SQL beside them.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.testing._http import Handler
from gateway.testing.users import FakeUser
from gateway.testing.warehouse import Warehouse

WORKSPACE_ID = "1234567890"
METASTORE_ID = "11111111-2222-3333-4444-555555555555"
Endpoint = Callable[[Handler, re.Match[str]], None]
RouteSpec = tuple[str, str, Endpoint]  # method, path pattern, endpoint


@dataclass
class Fault:
    """Something to go wrong for requests whose path contains `path`; `times=None` is forever."""

    path: str = ""
    method: str | None = None
    status: int | None = None
    retry_after: int = 0
    delay: float = 0.0
    drop: bool = False
    times: int | None = 1
    # A body that is not the API's (a login or proxy page), sent with `status` or 200.
    body: bytes | None = None
    content_type: str = "text/html"
    # A redirect there (`status` or 302, no body): a login page in front of the API.
    location: str | None = None
    # Headers sent with `body` (a Content-Length given here is sent as given).
    headers: dict[str, str] | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method in (None, method)) and self.path in path


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    user: str | None
    authorization: str | None
    accept_encoding: str | None = None
    user_agent: str | None = None


def now_ms() -> int:
    return int(time.time() * 1000)


def keep_newest(records: list[Any], record: Any, most: int) -> None:
    """`record` added to `records`, which keep `most` at most: past that the older half goes
    (a fake left running, in local mode or through a benchmark, would keep everything)."""
    records.append(record)
    if len(records) > most:
        del records[: len(records) - most // 2]


class WorkspaceState:
    """The attributes every API area reads and writes (set by FakeWorkspace.__init__)."""

    page_size: int
    empty_first_page: bool
    create_volume_delay: float
    range_always_206: bool
    ignore_range: bool
    trickle_seconds: float
    aborted_downloads: list[str]
    uploads_ended: int
    max_recorded: int
    lock: threading.RLock
    users: dict[str, FakeUser]
    service_principals: dict[str, tuple[str, FakeUser]]
    catalogs: dict[str, dict[str, Any]]
    readers: dict[str, set[str] | None]
    schemas: dict[tuple[str, str], dict[str, Any]]
    volumes: dict[tuple[str, str, str], dict[str, Any]]
    files_root: Path
    warehouse: Warehouse | None

    @property
    def url(self) -> str:
        raise NotImplementedError

    def add_schema(self, catalog: str, name: str) -> None:
        raise NotImplementedError  # FakeWorkspace's (it also creates it in the warehouse)

    def add_volume(self, catalog: str, schema: str, name: str, owner: str = "admins") -> None:
        raise NotImplementedError  # FakeWorkspace's (it also makes the folder on disk)

    def can_use_catalog(self, user: FakeUser | None, catalog: str) -> bool:
        with self.lock:
            readers = self.readers.get(catalog)
        return readers is None or (user is not None and user.user_name in readers)
