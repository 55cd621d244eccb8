"""A fake Databricks workspace: a real HTTP server on 127.0.0.1 the real SDK is pointed at.

It follows the REST shapes, status codes and error bodies of a real workspace (see
shared/reference/databricks-rest.md): bearer tokens map to users, lists paginate and are filtered
by each user's grants, files live on disk, errors carry the real bodies. Tests steer it with
`inject(Fault(...))` and read `requests` to see exactly what reached "Databricks".
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from gateway.testing._http import POLL_SECONDS, Handler, Server

WORKSPACE_ID = "1234567890"
METASTORE_ID = "11111111-2222-3333-4444-555555555555"
Route = tuple[str, "re.Pattern[str]", Callable[[Handler, re.Match[str]], None]]


@dataclass
class FakeUser:
    user_name: str
    display_name: str
    groups: list[str] = field(default_factory=lambda: ["users"])
    id: str = field(default_factory=lambda: str(secrets.randbelow(10**16)).zfill(16))


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

    def matches(self, method: str, path: str) -> bool:
        return (self.method in (None, method)) and self.path in path


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    user: str | None
    authorization: str | None


_FAULT_BODIES = {
    429: ("REQUEST_LIMIT_EXCEEDED", "Too many requests. Please wait a moment and try again."),
    500: ("INTERNAL_ERROR", "Internal error."),
    501: ("NOT_IMPLEMENTED", "Not implemented."),
    503: ("TEMPORARILY_UNAVAILABLE", "The service is temporarily unavailable."),
    504: ("DEADLINE_EXCEEDED", "The request timed out."),
}


class FakeWorkspace:
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
        self.aborted_downloads: list[str] = []
        self.ended_uploads: list[str] = []  # every file PUT handled, stored or not
        self.lock = threading.RLock()
        self.users: dict[str, FakeUser] = {}
        self.service_principals: dict[str, tuple[str, FakeUser]] = {}
        self.catalogs: dict[str, dict[str, Any]] = {}
        self.readers: dict[str, set[str] | None] = {}
        self.schemas: dict[tuple[str, str], dict[str, Any]] = {}
        self.volumes: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.faults: list[Fault] = []
        self.requests: list[Recorded] = []
        self.files_root = Path(tempfile.mkdtemp(prefix="fake-workspace-"))
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        from gateway.testing.warehouse import Warehouse

        self.warehouse = Warehouse(self) if Warehouse.available() else None
        self._routes = self._build_routes()

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, port: int = 0, host: str = "127.0.0.1") -> FakeWorkspace:
        self._server = Server((host, port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": POLL_SECONDS},
            name="fake-workspace",
            daemon=True,
        )
        self._thread.start()
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
        host, port = self._server.server_address[:2]
        assert isinstance(host, str)  # an AF_INET address; typeshed allows bytes for others
        return f"http://{host}:{port}"

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
                "created_at": _now_ms(),
                "created_by": "admin@example.com",
                **({"comment": comment} if comment else {}),
            }
            self.readers[name] = readers

    def add_schema(self, catalog: str, name: str) -> None:
        with self.lock:
            self.schemas[(catalog, name)] = {
                "name": name,
                "catalog_name": catalog,
                "full_name": f"{catalog}.{name}",
                "owner": "admins",
                "metastore_id": METASTORE_ID,
                "created_at": _now_ms(),
            }

    def add_volume(self, catalog: str, schema: str, name: str, owner: str = "admins") -> None:
        with self.lock:
            self.volumes[(catalog, schema, name)] = _volume_info(catalog, schema, name, owner)
        (self.files_root / catalog / schema / name).mkdir(parents=True, exist_ok=True)

    def inject(self, fault: Fault) -> Fault:
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def uploads_settled(self) -> bool:
        """Every file PUT that arrived is handled: its bytes stored or dropped (not faulted)."""
        with self.lock:
            puts = sum(r.method == "PUT" and "/fs/files/" in r.path for r in self.requests)
            return puts == len(self.ended_uploads)

    def paths_seen(self, prefix: str = "/api/2.0/fs/") -> list[str]:
        with self.lock:
            return [r.path for r in self.requests if r.path.startswith(prefix)]

    # --- dispatch -----------------------------------------------------------------------------

    def handle(self, rq: Handler) -> None:
        path = rq.raw_path
        user = self._bearer_user(rq.headers.get("Authorization"))
        with self.lock:
            self.requests.append(
                Recorded(
                    rq.command,
                    unquote(path),
                    rq.query,
                    user.user_name if user else None,
                    rq.headers.get("Authorization"),
                )
            )
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
        table: list[tuple[str, str, Callable[[Handler, re.Match[str]], None]]] = [
            ("GET", r"/\.well-known/databricks-config", self._well_known),
            ("GET", r"/oidc/\.well-known/oauth-authorization-server", self._oidc_discovery),
            ("POST", r"/oidc/v1/token", self._oidc_token),
            ("GET", r"/api/2\.0/preview/scim/v2/Me", self._me),
            ("GET", r"/api/2\.1/unity-catalog/catalogs", self._list_catalogs),
            ("GET", r"/api/2\.1/unity-catalog/schemas", self._list_schemas),
            ("GET", r"/api/2\.1/unity-catalog/volumes", self._list_volumes),
            ("POST", r"/api/2\.1/unity-catalog/volumes", self._create_volume),
            ("GET", r"/api/2\.1/unity-catalog/volumes/(?P<full>[^/]+)", self._read_volume),
            ("PUT", r"/api/2\.0/fs/files(?P<p>/.*)", self._put_file),
            ("GET", r"/api/2\.0/fs/files(?P<p>/.*)", self._get_file),
            ("HEAD", r"/api/2\.0/fs/files(?P<p>/.*)", self._get_file),
            ("DELETE", r"/api/2\.0/fs/files(?P<p>/.*)", self._delete_file),
            ("POST", r"/api/2\.0/fs/files(?P<p>/.*)", self._multipart_action),
            ("GET", r"/api/2\.0/fs/directories(?P<p>/.*)", self._list_directory),
            ("HEAD", r"/api/2\.0/fs/directories(?P<p>/.*)", self._head_directory),
            ("PUT", r"/api/2\.0/fs/directories(?P<p>/.*)", self._mkdir),
            ("DELETE", r"/api/2\.0/fs/directories(?P<p>/.*)", self._rmdir),
            ("POST", r"/api/2\.0/fs/create-download-url", self._presigned_disabled),
            ("POST", r"/api/2\.0/fs/create-upload-part-urls", self._presigned_disabled),
            ("POST", r"/api/2\.0/fs/create-abort-upload-url", self._presigned_disabled),
        ]
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
        if fault.body is not None:
            rq.send(fault.status or 200, fault.body, content_type=fault.content_type)
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

    def _well_known(self, rq: Handler, _: re.Match[str]) -> None:
        rq.send_json(
            200,
            {"oidc_endpoint": f"{self.url}/oidc", "workspace_id": WORKSPACE_ID, "cloud": "aws"},
        )

    def _oidc_discovery(self, rq: Handler, _: re.Match[str]) -> None:
        rq.send_json(
            200,
            {
                "issuer": f"{self.url}/oidc",
                "authorization_endpoint": f"{self.url}/oidc/v1/authorize",
                "token_endpoint": f"{self.url}/oidc/v1/token",
            },
        )

    def _oidc_token(self, rq: Handler, _match: re.Match[str]) -> None:
        form = dict(
            pair.split("=", 1) for pair in rq.read_body().decode().split("&") if "=" in pair
        )
        client_id, client_secret = (
            unquote(form.get("client_id", "")),
            unquote(form.get("client_secret", "")),
        )
        basic = rq.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            decoded = base64.b64decode(basic.removeprefix("Basic ")).decode()
            client_id, _, client_secret = decoded.partition(":")
        with self.lock:
            known = self.service_principals.get(client_id)
        if form.get("grant_type") != "client_credentials" or not known or known[0] != client_secret:
            rq.send_json(
                401,
                {"error": "invalid_client", "error_description": "Client authentication failed"},
            )
            return
        token = f"m2m-{secrets.token_hex(16)}"
        with self.lock:
            self.users[token] = known[1]
        rq.send_json(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": "all-apis",
            },
        )

    # --- SCIM ---------------------------------------------------------------------------------

    def _me(self, rq: Handler, _match: re.Match[str]) -> None:
        user = rq.user
        assert user is not None  # /api/ routes run for known tokens only
        given, _, family = user.display_name.partition(" ")
        rq.send_json(
            200,
            {
                "id": user.id,
                "userName": user.user_name,
                "displayName": user.display_name,
                "active": True,
                "name": {"givenName": given, "familyName": family},
                "emails": [{"value": user.user_name, "type": "work", "primary": True}],
                "groups": [
                    {"value": str(i), "display": g, "type": "direct", "$ref": f"Groups/{i}"}
                    for i, g in enumerate(user.groups, start=100)
                ],
                "entitlements": [{"value": "workspace-access"}],
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            },
            {"X-Databricks-Org-Id": WORKSPACE_ID},
        )

    # --- Unity Catalog ------------------------------------------------------------------------

    def can_use_catalog(self, user: FakeUser | None, catalog: str) -> bool:
        with self.lock:
            readers = self.readers.get(catalog)
        return readers is None or (user is not None and user.user_name in readers)

    def check_catalog(self, rq: Handler, catalog: str) -> bool:
        """Sends the real 404/403 and returns False when the catalog is missing or hidden."""
        with self.lock:
            exists = catalog in self.catalogs
        if not exists:
            rq.send_error_body(
                404, "CATALOG_DOES_NOT_EXIST", f"Catalog '{catalog}' does not exist."
            )
            return False
        if not self.can_use_catalog(rq.user, catalog):
            rq.send_error_body(
                403,
                "PERMISSION_DENIED",
                f"User does not have USE CATALOG on Catalog '{catalog}'.",
            )
            return False
        return True

    def _page(self, rq: Handler, key: str, items: list[dict[str, Any]]) -> None:
        requested = int(rq.query.get("max_results") or 0)
        size = min(requested, self.page_size) if requested > 0 else self.page_size
        token = rq.query.get("page_token")
        if self.empty_first_page and not token:
            rq.send_json(200, {key: [], "next_page_token": "0"})
            return
        if token is not None and not (token.isdigit() and int(token) <= len(items)):
            rq.send_error_body(400, "INVALID_PARAMETER_VALUE", f"Invalid page_token: {token!r}.")
            return
        start = int(token or 0)
        body: dict[str, Any] = {key: items[start : start + size]}
        if start + size < len(items):
            body["next_page_token"] = str(start + size)
        rq.send_json(200, body)

    def _list_catalogs(self, rq: Handler, _: re.Match[str]) -> None:
        with self.lock:
            names = sorted(self.catalogs)
            visible = [self.catalogs[n] for n in names if self.can_use_catalog(rq.user, n)]
        self._page(rq, "catalogs", visible)

    def _list_schemas(self, rq: Handler, _: re.Match[str]) -> None:
        catalog = rq.query.get("catalog_name", "").lower()
        if not self.check_catalog(rq, catalog):
            return
        with self.lock:
            items = [v for (c, _n), v in sorted(self.schemas.items()) if c == catalog]
        self._page(rq, "schemas", items)

    def _schema_exists(self, rq: Handler, catalog: str, schema: str) -> bool:
        if not self.check_catalog(rq, catalog):
            return False
        with self.lock:
            if (catalog, schema) in self.schemas:
                return True
        rq.send_error_body(
            404, "SCHEMA_DOES_NOT_EXIST", f"Schema '{catalog}.{schema}' does not exist."
        )
        return False

    def _list_volumes(self, rq: Handler, _: re.Match[str]) -> None:
        catalog = rq.query.get("catalog_name", "").lower()
        schema = rq.query.get("schema_name", "").lower()
        if not self._schema_exists(rq, catalog, schema):
            return
        with self.lock:
            items = [
                v for (c, s, _n), v in sorted(self.volumes.items()) if (c, s) == (catalog, schema)
            ]
        self._page(rq, "volumes", items)

    def _read_volume(self, rq: Handler, match: re.Match[str]) -> None:
        parts = unquote(match["full"]).lower().split(".")
        if len(parts) != 3:
            rq.send_error_body(400, "INVALID_PARAMETER_VALUE", "Invalid volume name.")
            return
        if not self._schema_exists(rq, parts[0], parts[1]):
            return
        with self.lock:
            info = self.volumes.get((parts[0], parts[1], parts[2]))
        if info is None:
            rq.send_error_body(
                404, "RESOURCE_DOES_NOT_EXIST", f"Volume '{'.'.join(parts)}' does not exist."
            )
            return
        rq.send_json(200, info)

    def _create_volume(self, rq: Handler, _: re.Match[str]) -> None:
        body = rq.json_body()
        catalog, schema = (
            str(body.get("catalog_name", "")).lower(),
            str(body.get("schema_name", "")).lower(),
        )
        name = str(body.get("name", "")).lower()
        if not self._schema_exists(rq, catalog, schema):
            return
        if body.get("volume_type") == "EXTERNAL" and not body.get("storage_location"):
            rq.send_error_body(
                400, "INVALID_PARAMETER_VALUE", "Storage location is required for external volumes."
            )
            return
        time.sleep(self.create_volume_delay)  # widens the window tests race in
        user = rq.user
        assert user is not None  # /api/ routes run for known tokens only
        with self.lock:
            if (catalog, schema, name) in self.volumes:
                rq.send_error_body(
                    409,
                    "RESOURCE_ALREADY_EXISTS",
                    f"Volume '{catalog}.{schema}.{name}' already exists.",
                )
                return
            self.add_volume(catalog, schema, name, owner=user.user_name)
            info = self.volumes[(catalog, schema, name)]
            if body.get("comment"):
                info["comment"] = body["comment"]
        rq.send_json(200, info)

    # --- Files API ----------------------------------------------------------------------------

    def _local(self, rq: Handler, raw: str) -> Path | None:
        """Map a /Volumes path to disk, sending the real error and returning None if refused."""
        path = unquote(raw)
        parts = path.split("/")
        malformed = len(parts) < 5 or parts[1] != "Volumes" or "\x00" in path
        if (
            malformed
            or any(p in ("", ".", "..") for p in parts[2:5])
            or any(p in (".", "..") for p in parts[5:])
        ):
            rq.send_error_body(
                400, "BAD_REQUEST", f"Invalid path: {path}", "FILES_API_INVALID_PATH"
            )
            return None
        catalog, schema, volume = parts[2], parts[3], parts[4]
        if not self.can_use_catalog(rq.user, catalog):
            rq.send_error_body(
                403, "PERMISSION_DENIED", f"User does not have USE CATALOG on Catalog '{catalog}'."
            )
            return None
        with self.lock:
            exists = (catalog, schema, volume) in self.volumes
        if not exists:
            rq.send_error_body(
                404,
                "NOT_FOUND",
                f"Volume '{catalog}.{schema}.{volume}' does not exist.",
                "FILES_API_VOLUME_NOT_FOUND",
            )
            return None
        return self.files_root.joinpath(*parts[2:]).resolve()

    def _put_file(self, rq: Handler, match: re.Match[str]) -> None:
        try:
            self._store_file(rq, match)
        finally:
            with self.lock:
                self.ended_uploads.append(match["p"])

    def _store_file(self, rq: Handler, match: re.Match[str]) -> None:
        target = self._local(rq, match["p"])
        if target is None:
            return
        overwrite = rq.query.get("overwrite", "false").lower() == "true"
        if target.exists() and (target.is_dir() or not overwrite):
            rq.send_error_body(409, "ALREADY_EXISTS", "The file being created already exists.")
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.files_root, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in rq.body_chunks():
                    out.write(chunk)
            if overwrite:
                os.replace(tmp, target)
            else:
                os.link(tmp, target)  # atomic "create if absent"
        except FileExistsError:
            rq.send_error_body(409, "ALREADY_EXISTS", "The file being created already exists.")
            return
        except (ConnectionResetError, ValueError):
            rq.close_connection = True  # a broken upload leaves nothing
            return
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        rq.send(204)

    def _get_file(self, rq: Handler, match: re.Match[str]) -> None:
        target = self._local(rq, match["p"])
        if target is None:
            return
        if not target.is_file():
            rq.send_error_body(404, "NOT_FOUND", "File not found.", "FILES_API_FILE_NOT_FOUND")
            return
        size = target.stat().st_size
        asked = None if self.ignore_range else rq.headers.get("Range")
        ranged = _byte_range(asked, size)
        if ranged is None:
            rq.send(416, headers={"Content-Range": f"bytes */{size}"})
            return
        start, end = ranged
        headers = {
            "Content-Length": str(end - start),
            "Last-Modified": email.utils.formatdate(target.stat().st_mtime, usegmt=True),
            "Accept-Ranges": "bytes",
        }
        status = 200
        if asked and ((start, end) != (0, size) or self.range_always_206):
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        rq.send_response(status)
        rq.send_header("Content-Type", "application/octet-stream")
        for name, value in headers.items():
            rq.send_header(name, value)
        rq.end_headers()
        if rq.command == "GET":
            try:
                _copy_range(target, start, end, rq.wfile, self.trickle_seconds)
            except OSError:  # reset, broken pipe, aborted: the client closed mid-body
                with self.lock:
                    self.aborted_downloads.append(match["p"])
                raise ConnectionResetError from None

    def _delete_file(self, rq: Handler, match: re.Match[str]) -> None:
        target = self._local(rq, match["p"])
        if target is None:
            return
        if not target.is_file():
            rq.send_error_body(404, "NOT_FOUND", "File not found.", "FILES_API_FILE_NOT_FOUND")
            return
        target.unlink()
        rq.send(204)

    def _multipart_action(self, rq: Handler, match: re.Match[str]) -> None:
        rq.read_body()
        if rq.query.get("action") == "initiate-upload":
            rq.send_json(200, {"multipart_upload": {"session_token": uuid.uuid4().hex}})
        else:
            rq.send_json(200, {})

    def _presigned_disabled(self, rq: Handler, _: re.Match[str]) -> None:
        rq.read_body()
        rq.send_error_body(
            403,
            "PERMISSION_DENIED",
            "Presigned URLs API is not enabled",
            "FILES_API_API_IS_NOT_ENABLED",
        )

    def _list_directory(self, rq: Handler, match: re.Match[str]) -> None:
        target = self._local(rq, match["p"])
        if target is None:
            return
        if not target.is_dir():
            rq.send_error_body(
                404,
                "NOT_FOUND",
                "The directory being accessed is not found.",
                "FILES_API_DIRECTORY_IS_NOT_FOUND",
            )
            return
        virtual = unquote(match["p"]).rstrip("/")
        entries = [_entry(child, f"{virtual}/{child.name}") for child in sorted(target.iterdir())]
        size = min(int(rq.query.get("page_size") or 1000), 1000, self.page_size)
        start = int(rq.query.get("page_token") or 0)
        body: dict[str, Any] = {"contents": entries[start : start + size]}
        if start + size < len(entries):
            body["next_page_token"] = str(start + size)
        rq.send_json(200, body)

    def _head_directory(self, rq: Handler, match: re.Match[str]) -> None:
        target = self._local(rq, match["p"])
        if target is None:
            return
        rq.send(200 if target.is_dir() else 404)

    def _mkdir(self, rq: Handler, match: re.Match[str]) -> None:
        target = self._local(rq, match["p"])
        if target is None:
            return
        if any(p.is_file() for p in (target, *target.parents)):
            rq.send_error_body(409, "ALREADY_EXISTS", "A file exists at this path.")
            return
        target.mkdir(parents=True, exist_ok=True)
        rq.send(204)

    def _rmdir(self, rq: Handler, match: re.Match[str]) -> None:
        target = self._local(rq, match["p"])
        if target is None:
            return
        if not target.is_dir():
            rq.send_error_body(
                404,
                "NOT_FOUND",
                "The directory being accessed is not found.",
                "FILES_API_DIRECTORY_IS_NOT_FOUND",
            )
            return
        if any(target.iterdir()):
            rq.send_error_body(
                400,
                "BAD_REQUEST",
                "The directory is not empty.",
                "FILES_API_DIRECTORY_IS_NOT_EMPTY",
            )
            return
        target.rmdir()
        rq.send(204)


def _volume_info(catalog: str, schema: str, name: str, owner: str) -> dict[str, Any]:
    volume_id = str(uuid.uuid4())
    return {
        "catalog_name": catalog,
        "schema_name": schema,
        "name": name,
        "full_name": f"{catalog}.{schema}.{name}",
        "volume_type": "MANAGED",
        "volume_id": volume_id,
        "storage_location": f"s3://fake-bucket/metastore/volumes/{volume_id}",
        "owner": owner,
        "metastore_id": METASTORE_ID,
        "created_at": _now_ms(),
        "created_by": owner,
    }


def _entry(child: Path, virtual: str) -> dict[str, Any]:
    stat = child.stat()
    entry: dict[str, Any] = {
        "path": virtual,
        "name": child.name,
        "is_directory": child.is_dir(),
        "last_modified": int(stat.st_mtime * 1000),
    }
    if not child.is_dir():
        entry["file_size"] = stat.st_size
    return entry


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The [start, end) a Range header asks for; None when it cannot be satisfied (416)."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header or "")
    if not match or (not match[1] and not match[2]):
        return 0, size
    if not match[1]:
        return max(0, size - int(match[2])), size
    start = int(match[1])
    if start >= size:
        return None
    end = min(int(match[2]) + 1, size) if match[2] else size
    return start, max(start, end)


def _copy_range(path: Path, start: int, end: int, out: Any, trickle: float = 0.0) -> None:
    step = 1024 if trickle else 1024 * 1024
    with path.open("rb") as src:
        src.seek(start)
        remaining = end - start
        while remaining > 0:
            data = src.read(min(step, remaining))
            if not data:
                return
            out.write(data)
            remaining -= len(data)
            if trickle:
                out.flush()
                time.sleep(trickle)


def _now_ms() -> int:
    return int(time.time() * 1000)


def iter_demo_files() -> Iterator[tuple[str, bytes]]:
    yield "README.txt", b"Files in this volume come from the fake workspace's demo seed.\n"
    yield "sales/2024-01.csv", b"region,amount\nnorth,120.50\nsouth,98.10\n"
    yield "sales/2024-02.csv", b"region,amount\nnorth,130.00\nsouth,101.25\n"
