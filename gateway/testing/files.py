"""The fake's Files API: volume files on disk, byte ranges, directories, no presigned URLs."""

from __future__ import annotations

import contextlib
import email.utils
import os
import re
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from gateway.testing._http import Handler
from gateway.testing.state import RouteSpec, WorkspaceState, keep_newest


class FilesApi(WorkspaceState):
    def files_routes(self) -> list[RouteSpec]:
        return [
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
                self.uploads_ended += 1

    def _store_file(self, rq: Handler, match: re.Match[str]) -> None:
        target = self._local(rq, match["p"])
        if target is None:
            return
        overwrite = rq.query.get("overwrite", "false").lower() == "true"
        if target.exists() and (target.is_dir() or not overwrite):
            rq.send_error_body(409, "ALREADY_EXISTS", "The file being created already exists.")
            return
        if any(p.is_file() for p in target.parents):
            # Unverified what Databricks answers here: the 409 its mkdir gives for a file.
            rq.send_error_body(409, "ALREADY_EXISTS", "A file exists at this path.")
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
        target = self._file(rq, match["p"])
        if target is None:
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
                    keep_newest(self.aborted_downloads, match["p"], self.max_recorded)
                raise ConnectionResetError from None

    def _delete_file(self, rq: Handler, match: re.Match[str]) -> None:
        target = self._file(rq, match["p"])
        if target is None:
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

    def _file(self, rq: Handler, raw: str) -> Path | None:
        """The file on disk, or None once the real 404 (or the path's error) is sent."""
        target = self._local(rq, raw)
        if target is not None and not target.is_file():
            rq.send_error_body(404, "NOT_FOUND", "File not found.", "FILES_API_FILE_NOT_FOUND")
            return None
        return target

    def _directory(self, rq: Handler, raw: str) -> Path | None:
        """The directory on disk, or None once the real 404 (or the path's error) is sent."""
        target = self._local(rq, raw)
        if target is not None and not target.is_dir():
            rq.send_error_body(
                404,
                "NOT_FOUND",
                "The directory being accessed is not found.",
                "FILES_API_DIRECTORY_IS_NOT_FOUND",
            )
            return None
        return target

    def _list_directory(self, rq: Handler, match: re.Match[str]) -> None:
        target = self._directory(rq, match["p"])
        if target is None:
            return
        virtual = unquote(match["p"]).rstrip("/")
        entries = [_entry(child, f"{virtual}/{child.name}") for child in sorted(target.iterdir())]
        size = min(int(rq.query.get("page_size") or 1000), 1000, self.page_size)
        rq.send_page("contents", entries, size)

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
        target = self._directory(rq, match["p"])
        if target is None:
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
