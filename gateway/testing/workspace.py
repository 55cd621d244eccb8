"""A fake Databricks workspace: a real HTTP server on 127.0.0.1 the real SDK is pointed at.

It follows the REST shapes, status codes and error bodies of a real workspace (see
shared/reference/databricks-rest.md): bearer tokens map to users, lists paginate and are filtered
by each user's grants, files live on disk, errors carry the real bodies. Tests steer it with
`inject(Fault(...))` and read `requests` to see exactly what reached "Databricks".
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from gateway.testing._http import Handler, Server
from gateway.testing.catalog import CatalogApi, volume_info
from gateway.testing.files import FilesApi
from gateway.testing.identity import IdentityApi
from gateway.testing.state import METASTORE_ID, Endpoint, Fault, Recorded, keep_newest, now_ms
from gateway.testing.users import FakeUser
from gateway.testing.warehouse import Warehouse

Route = tuple[str, "re.Pattern[str]", Endpoint]


MAX_RECORDED_REQUESTS = 100_000  # ~20 MiB of records at most (and as many aborted downloads)

_FAULT_BODIES = {
    429: ("REQUEST_LIMIT_EXCEEDED", "Too many requests. Please wait a moment and try again."),
    500: ("INTERNAL_ERROR", "Internal error."),
    501: ("NOT_IMPLEMENTED", "Not implemented."),
    503: ("TEMPORARILY_UNAVAILABLE", "The service is temporarily unavailable."),
    504: ("DEADLINE_EXCEEDED", "The request timed out."),
}


class FakeWorkspace(IdentityApi, CatalogApi, FilesApi):
    """The fake's state, its HTTP server and the dispatch to each API area."""

    def __init__(self, *, page_size: int = 100, empty_first_page: bool = False) -> None:
        self.page_size = page_size
        self.empty_first_page = empty_first_page
        self.create_volume_delay = 0.0
        self.latency = 0.0  # seconds added to every /api/ request (benchmarks)
        # Range variants: a whole-file range answered 206 (RFC-exact) instead of 200, or every
        # Range ignored with the whole file and 200 (a hostile or naive upstream).
        self.range_always_206 = False
        self.ignore_range = False
        # A slow upstream: file bodies sent 1 KiB per `trickle_seconds`; downloads the client
        # abandoned before the end are recorded (the gateway closed its socket).
        self.trickle_seconds = 0.0
        self.aborted_downloads: list[str] = []  # the newest `max_recorded`
        self.uploads_arrived = 0  # file PUTs seen
        self.uploads_ended = 0  # file PUTs handled, stored or not
        self.lock = threading.RLock()
        self.users: dict[str, FakeUser] = {}
        self.service_principals: dict[str, tuple[str, FakeUser]] = {}
        self.catalogs: dict[str, dict[str, Any]] = {}
        self.readers: dict[str, set[str] | None] = {}
        self.schemas: dict[tuple[str, str], dict[str, Any]] = {}
        self.volumes: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.faults: list[Fault] = []
        self.requests: list[Recorded] = []
        # The newest requests only (state.keep_newest).
        self.max_recorded = MAX_RECORDED_REQUESTS
        self.files_root = Path(tempfile.mkdtemp(prefix="fake-workspace-"))
        self._server: Server | None = None
        self.warehouse = Warehouse(self.apply_fault) if Warehouse.available() else None
        self._routes = self._build_routes()

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, port: int = 0, host: str = "127.0.0.1") -> FakeWorkspace:
        self._server = Server((host, port), self)
        self._server.serve_in_background("fake-workspace")
        if self.warehouse is not None:
            self.warehouse.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self.warehouse is not None:
            self.warehouse.close()
        shutil.rmtree(self.files_root, ignore_errors=True)

    def __enter__(self) -> FakeWorkspace:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the workspace first"
        return self._server.url

    # --- seeding ------------------------------------------------------------------------------

    def add_user(self, token: str, user_name: str, display_name: str | None = None) -> FakeUser:
        user = FakeUser(user_name, display_name or user_name.split("@")[0].title())
        with self.lock:
            self.users[token] = user
        return user

    def add_service_principal(self, client_id: str, client_secret: str, name: str) -> FakeUser:
        user = FakeUser(client_id, name, groups=["service-principals"])
        with self.lock:
            self.service_principals[client_id] = (client_secret, user)
        return user

    def add_catalog(
        self, name: str, readers: set[str] | None = None, comment: str | None = None
    ) -> None:
        """`readers` are the user names that may see it; None means everyone."""
        with self.lock:
            self.catalogs[name] = {
                "name": name,
                "full_name": name,
                "catalog_type": "MANAGED_CATALOG",
                "owner": "admins",
                "metastore_id": METASTORE_ID,
                "created_at": now_ms(),
                "created_by": "admin@example.com",
                **({"comment": comment} if comment else {}),
            }
            self.readers[name] = readers
        if self.warehouse is not None:
            self.warehouse.ensure_catalog(name)
        for schema in ("default", "information_schema"):  # every Unity Catalog catalog has them
            self.add_schema(name, schema)

    def add_schema(self, catalog: str, name: str) -> None:
        if self.warehouse is not None and name != "information_schema":
            self.warehouse.ensure_schema(catalog, name)
        with self.lock:
            self.schemas[(catalog, name)] = {
                "name": name,
                "catalog_name": catalog,
                "full_name": f"{catalog}.{name}",
                "owner": "admins",
                "metastore_id": METASTORE_ID,
                "created_at": now_ms(),
            }

    def add_volume(self, catalog: str, schema: str, name: str, owner: str = "admins") -> None:
        with self.lock:
            self.volumes[(catalog, schema, name)] = volume_info(catalog, schema, name, owner)
        (self.files_root / catalog / schema / name).mkdir(parents=True, exist_ok=True)

    def inject(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def uploads_settled(self) -> bool:
        """Every file PUT that arrived is handled: its bytes stored or dropped (not faulted),
        and no partial upload is left on disk. (A PUT whose head has not been read yet is not
        seen here: its temporary file appears, and goes, after.)"""
        with self.lock:
            handled = self.uploads_arrived == self.uploads_ended
        return handled and not any(self.files_root.glob(".upload-*"))

    def paths_seen(self, prefix: str = "/api/2.0/fs/") -> list[str]:
        with self.lock:
            return [r.path for r in self.requests if r.path.startswith(prefix)]

    # --- dispatch -----------------------------------------------------------------------------

    def handle(self, rq: Handler) -> None:
        path = rq.raw_path
        user = self._bearer_user(rq.headers.get("Authorization"))
        recorded = Recorded(
            rq.command,
            unquote(path),
            rq.query,
            user.user_name if user else None,
            rq.headers.get("Authorization"),
            rq.headers.get("Accept-Encoding"),
            rq.headers.get("User-Agent"),
        )
        with self.lock:
            keep_newest(self.requests, recorded, self.max_recorded)
            if rq.command == "PUT" and "/fs/files/" in recorded.path:
                self.uploads_arrived += 1
        if self.latency and path.startswith("/api/"):
            time.sleep(self.latency)
        if self.apply_fault(rq, path):
            return
        for method, pattern, fn in self._routes:
            match = pattern.fullmatch(path)
            if match and method == rq.command:
                if path.startswith("/api/") and not self._authorised(rq, user):
                    return
                rq.user = user
                fn(rq, match)
                return
        rq.send_error_body(404, "ENDPOINT_NOT_FOUND", f"No API found for '{rq.command} {path}'")

    def _build_routes(self) -> list[Route]:
        table = [*self.identity_routes(), *self.catalog_routes(), *self.files_routes()]
        if self.warehouse is not None:
            table += self.warehouse.routes()
        return [(m, re.compile(p), fn) for m, p, fn in table]

    def apply_fault(self, rq: Handler, path: str) -> bool:
        with self.lock:
            fault = next((f for f in self.faults if f.matches(rq.command, path)), None)
            if fault is None:
                return False
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
        if fault.delay:
            time.sleep(fault.delay)
        if fault.drop:
            rq.drop()
            return True
        if fault.location is not None:
            rq.send(fault.status or 302, headers={"Location": fault.location})
            return True
        if fault.body is not None:
            rq.send(
                fault.status or 200,
                fault.body,
                headers=fault.headers,
                content_type=fault.content_type,
            )
            return True
        if fault.status is None:
            return False
        if fault.status == 502:
            rq.send(502, b"<html><body>Bad Gateway</body></html>", content_type="text/html")
            return True
        code, message = _FAULT_BODIES.get(fault.status, ("UNKNOWN", "Unknown error."))
        headers = {"Retry-After": str(fault.retry_after)} if fault.status in (429, 503) else None
        rq.send_error_body(fault.status, code, message, headers=headers)
        return True

    # --- auth ---------------------------------------------------------------------------------

    def _bearer_user(self, header: str | None) -> FakeUser | None:
        if not header or not header.startswith("Bearer "):
            return None
        with self.lock:
            return self.users.get(header.removeprefix("Bearer "))

    def _authorised(self, rq: Handler, user: FakeUser | None) -> bool:
        header = rq.headers.get("Authorization")
        if not header or not header.startswith("Bearer "):
            rq.send_error_body(
                401, 401, "Credential was not sent or was of an unsupported type for this API."
            )
            return False
        if user is None:
            rq.send_error_body(403, 403, "Invalid access token.")
            return False
        return True


def iter_demo_files() -> Iterator[tuple[str, bytes]]:
    yield "README.txt", b"Files in this volume come from the fake workspace's demo seed.\n"
    yield "sales/2024-01.csv", b"region,amount\nnorth,120.50\nsouth,98.10\n"
    yield "sales/2024-02.csv", b"region,amount\nnorth,130.00\nsouth,101.25\n"
