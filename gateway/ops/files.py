"""Files in Unity Catalog volumes.

Bytes move through the raw Files API (`PUT/GET /api/2.0/fs/files{path}`) with the identity's
own auth headers, chunk by chunk, so memory stays constant whatever the file size: the SDK's
`files.upload` buffers and switches to multipart, and its download first asks for presigned
URLs. Metadata and directory calls go through the SDK.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.utils
import mimetypes
import re
import socket
import threading
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

import anyio.to_thread
import httpx
import urllib3
from databricks.sdk.errors import NotFound
from pydantic import BaseModel, Field

from gateway.auth import get_workspace_client
from gateway.errors import (
    GatewayError,
    UpstreamBadResponse,
    bad_request,
    error,
    error_from_response,
)
from gateway.paths import confine
from gateway.registry import ByteStream, Upload
from gateway.runtime import Runtime

# 1 MiB reads: 8 concurrent 256 MiB downloads peaked at +26 MiB RSS (4 MiB reads: +93 MiB,
# kept +49 MiB after, the worker threads' malloc arenas holding freed buffers); throughput of one
# 1 GiB download was within run-to-run noise of 4 MiB reads (bench/run.sh --only files).
DOWNLOAD_CHUNK_BYTES = 1024 * 1024
MAX_LISTED_ENTRIES = 10_000
MAX_RECURSIVE_DELETE = 10_000
# Types a browser renders inertly: served inline. Everything else (HTML, XHTML, XML, XSLT, SVG,
# MHTML, scripts, unknown types...) goes out as an octet-stream attachment, because Express
# proxies these bytes onto the app's own origin.
INLINE_TYPES = frozenset(
    {
        "text/plain",
        "text/csv",
        "text/tab-separated-values",
        "text/markdown",
        "application/json",
        "application/pdf",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/bmp",
        "audio/mpeg",
        "audio/ogg",
        "audio/wav",
        "video/mp4",
        "video/webm",
    }
)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")

PathParam = Annotated[str, Field(description="/Volumes/<catalog>/<schema>/<volume>/... path")]


class Entry(BaseModel):
    name: str
    path: str
    is_directory: bool
    size: int | None = None
    modified: str | None = Field(None, description="ISO-8601 UTC")


class Listing(BaseModel):
    entries: list[Entry]
    next_page_token: str | None = Field(
        None, description="set when more entries remain (one page asked, or the cap reached)"
    )


class FileInfo(BaseModel):
    exists: bool
    path: str
    is_directory: bool = False
    size: int | None = None
    modified: str | None = None
    content_type: str | None = None


class TextContent(BaseModel):
    content: str
    size: int


class Written(BaseModel):
    path: str
    size: int


class Deleted(BaseModel):
    path: str
    kind: Literal["file", "directory"]
    removed: int = Field(description="files and directories removed")


class DirectoryCreated(BaseModel):
    path: str


# --- ops ---------------------------------------------------------------------------------------


def list_directory(
    runtime: Runtime,
    path: PathParam,
    page_size: Annotated[int | None, Field(ge=1, le=1000)] = None,
    page_token: str | None = None,
) -> Listing:
    """Entries of a directory. Follows every page (up to 10,000 entries) unless `page_size` or
    `page_token` asks for one page; `next_page_token` says where to go on."""
    path = _confine(runtime, path)
    api = get_workspace_client().api_client
    entries: list[Entry] = []
    one_page = page_size is not None or page_token is not None
    token = page_token
    while True:
        query: dict[str, Any] = {"page_size": page_size or 1000}
        if token:
            query["page_token"] = token
        page = api.do("GET", f"/api/2.0/fs/directories{_quoted(path)}", query=query)
        entries += [_entry(raw) for raw in page.get("contents", [])]
        token = page.get("next_page_token") or None
        if one_page or not token or len(entries) >= MAX_LISTED_ENTRIES:
            return Listing(entries=entries, next_page_token=token)


def create_directory(runtime: Runtime, path: PathParam) -> DirectoryCreated:
    """Create a directory and its parents (like `mkdir -p`); succeeds if it exists."""
    path = _confine(runtime, path)
    get_workspace_client().files.create_directory(path)
    return DirectoryCreated(path=path)


def file_info(runtime: Runtime, path: PathParam) -> FileInfo:
    """Metadata of a file or directory; a missing path is `exists: false`, other errors stay
    errors."""
    path = _confine(runtime, path)
    files = get_workspace_client().files
    try:
        meta = files.get_metadata(path)
    except NotFound:
        pass
    else:
        return FileInfo(
            exists=True,
            path=path,
            size=meta.content_length,
            modified=_http_date_to_iso(meta.last_modified),
            content_type=_content_type(path),
        )
    try:
        files.get_directory_metadata(path)
    except NotFound:
        return FileInfo(exists=False, path=path)
    return FileInfo(exists=True, path=path, is_directory=True)


def delete_file(runtime: Runtime, path: PathParam, recursive: bool = False) -> Deleted:
    """Delete a file, or a directory: an empty one as is, a non-empty one only with
    `recursive: true` (at most 10,000 entries, checked before anything is deleted)."""
    path = _confine(runtime, path)
    files = get_workspace_client().files
    try:
        files.delete(path)
        return Deleted(path=path, kind="file", removed=1)
    except NotFound:
        pass
    if recursive:
        doomed = _tree(runtime, path)  # also raises 404 for a missing path
    elif list_directory(runtime, path, page_size=1).entries:
        raise GatewayError(
            409, "DIRECTORY_NOT_EMPTY", "The directory is not empty; pass recursive: true."
        )
    else:
        doomed = []
    for entry in doomed:  # deepest first: files, then the directories that held them
        if entry.is_directory:
            files.delete_directory(entry.path)
        else:
            files.delete(entry.path)
    files.delete_directory(path)
    return Deleted(path=path, kind="directory", removed=len(doomed) + 1)


async def read_file(
    runtime: Runtime,
    path: PathParam,
    encoding: Literal["utf-8"] | None = None,
    offset: Annotated[int | None, Field(ge=0)] = None,
    length: Annotated[int | None, Field(ge=1)] = None,
) -> ByteStream | TextContent:
    """The file's bytes, streamed (or, with `encoding: "utf-8"`, its text as JSON, up to
    GATEWAY_MAX_TEXT_READ_BYTES). `offset`/`length` read a byte range."""
    path = _confine(runtime, path)
    url, headers = await _file_endpoint(path)
    window = _Window(offset or 0, length) if offset is not None or length is not None else None
    if window is not None:
        headers["Range"] = window.header()
    response = await _open_download(runtime, url, headers, window)
    if encoding is not None:
        cap = window.length if window else None
        return await _read_text(response, runtime.settings.max_text_read_bytes, cap)
    headers_out = _download_headers(response, path, window)
    return ByteStream(
        _relay(response, runtime, window.length if window else None),
        headers_out.pop("Content-Type"),
        headers_out,
    )


async def write_file(
    runtime: Runtime,
    upload: Upload,
    path: PathParam,
    overwrite: bool = False,
    content: str | None = None,
    content_base64: str | None = None,
) -> Written:
    """Write a file. Send raw bytes (`Content-Type: application/octet-stream`, params in the
    query string) to stream any size, or `content` / `content_base64` in JSON for small ones.
    An existing file is replaced only with `overwrite: true` (else 409, file untouched)."""
    path = _confine(runtime, path)
    limit = runtime.settings.max_upload_bytes
    body, declared = _upload_body(upload, content, content_base64, limit)
    counter = _Counter(limit)
    url, headers = await _file_endpoint(path)
    headers["Content-Type"] = "application/octet-stream"
    if declared is not None:
        headers["Content-Length"] = str(declared)
    query = {"overwrite": "true" if overwrite else "false"}
    await _put(runtime, url, headers, counter.wrap(body), query)
    return Written(path=path, size=counter.total)


# --- helpers -----------------------------------------------------------------------------------


def _confine(runtime: Runtime, path: str) -> str:
    settings = runtime.settings
    return confine(path, settings.allowed_roots, settings.default_volume)


def _quoted(path: str) -> str:
    return quote(path, safe="/")


async def _file_endpoint(path: str) -> tuple[str, dict[str, str]]:
    """The raw Files API URL of `path` and the identity's auth headers (one worker hop: the
    client may need building, and an OAuth token refreshing)."""

    def resolve() -> tuple[str, dict[str, str]]:
        config = get_workspace_client().config
        url = f"{config.host.rstrip('/')}/api/2.0/fs/files{_quoted(path)}"
        return url, dict(config.authenticate())

    return await anyio.to_thread.run_sync(resolve)


async def _put(
    runtime: Runtime,
    url: str,
    headers: dict[str, str],
    content: AsyncIterator[bytes],
    query: dict[str, str],
) -> None:
    http = runtime.upload_http
    request = http.build_request("PUT", url, headers=headers, content=content, params=query)
    response = await http.send(request, stream=True)
    try:
        if response.status_code >= 400:
            body = await _bounded_read(response, 64 * 1024)
            raise error_from_response(
                response.status_code, body, response.headers.get("retry-after")
            )
        # The Files API answers 204. A 200 HTML page (a login or proxy page) or a redirect
        # means nothing was stored: never report that as a success.
        kind = response.headers.get("content-type", "")
        if response.status_code not in (200, 201, 204) or _is_html(kind):
            raise UpstreamBadResponse(f"upload answered {response.status_code} {kind!r}")
    finally:
        await response.aclose()


def _is_html(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml")


async def _bounded_read(response: httpx.Response, limit: int) -> bytes:
    buffer = bytearray()
    async for chunk in response.aiter_raw():
        buffer += chunk
        if len(buffer) > limit:
            break
    return bytes(buffer[:limit])


class _Window:
    """A byte range asked with `offset`/`length`."""

    def __init__(self, start: int, length: int | None) -> None:
        self.start, self.length = start, length

    def header(self) -> str:
        end = str(self.start + self.length - 1) if self.length else ""
        return f"bytes={self.start}-{end}"

    def check(self, status: int, content_range: str | None) -> None:
        """Accept a 206 for the asked start, or a 200 when the window starts at 0 (the whole
        file, cut to `length` as it streams). Anything else would hand the caller the wrong
        bytes."""
        if status == 200 and self.start == 0:
            return
        match = _CONTENT_RANGE.fullmatch((content_range or "").strip())
        if status != 206 or not match or int(match[1]) != self.start:
            raise UpstreamBadResponse(f"range {self.header()} answered {status} {content_range!r}")
        if self.length is not None and int(match[2]) - int(match[1]) + 1 > self.length:
            raise UpstreamBadResponse(f"range {self.header()} answered {content_range!r}")


async def _open_download(
    runtime: Runtime, url: str, headers: dict[str, str], window: _Window | None
) -> urllib3.BaseHTTPResponse:
    abandoned = threading.Event()

    def open_() -> urllib3.BaseHTTPResponse:
        response = runtime.download_http.request("GET", url, headers=headers, preload_content=False)
        if abandoned.is_set():  # the caller is gone (deadline, disconnect): free the socket
            response.close()
        return response

    try:
        response = await anyio.to_thread.run_sync(
            open_, limiter=runtime.download_limiter, abandon_on_cancel=True
        )
    except anyio.get_cancelled_exc_class():
        abandoned.set()
        raise
    try:
        _check_download(response, window)
    except Exception:
        response.close()
        raise
    return response


def _check_download(response: urllib3.BaseHTTPResponse, window: _Window | None) -> None:
    status = response.status
    if status == 416:
        raise error("RANGE_NOT_SATISFIABLE", "The offset is past the end of the file.")
    if status >= 400:
        body = response.read(64 * 1024)  # an error body is small; bounded anyway
        raise error_from_response(status, body, response.headers.get("retry-after"))
    kind = response.headers.get("content-type", "")
    if status not in (200, 206) or _is_html(kind):
        raise UpstreamBadResponse(f"download answered {status} {kind!r}")
    if window is not None:
        window.check(status, response.headers.get("content-range"))
    elif status != 200:
        raise UpstreamBadResponse(f"download answered {status} without a range asked")


async def _relay(
    response: urllib3.BaseHTTPResponse, runtime: Runtime, limit: int | None = None
) -> AsyncGenerator[bytes, None]:
    finished = False
    remaining = limit
    try:
        while remaining is None or remaining > 0:
            size = (
                DOWNLOAD_CHUNK_BYTES if remaining is None else min(remaining, DOWNLOAD_CHUNK_BYTES)
            )
            chunk = await _read(response, size, runtime.download_limiter)
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
        finished = remaining is None  # read to the end; a cut window may leave bytes unread
    finally:
        # Complete: the connection goes back to the pool. Cut short (the caller went away, or
        # a window of a whole-file answer): close it rather than drain what may be gigabytes.
        if finished:
            response.release_conn()
        else:
            _hang_up(response)
            response.close()


async def _read(
    response: urllib3.BaseHTTPResponse, size: int, limiter: anyio.CapacityLimiter | None = None
) -> bytes:
    """One blocking read in a worker thread that a deadline or a departing caller can stop at
    once: the socket is shut down under the abandoned thread, which then ends promptly."""
    try:
        return await anyio.to_thread.run_sync(
            response.read, size, limiter=limiter, abandon_on_cancel=True
        )
    except anyio.get_cancelled_exc_class():
        _hang_up(response)
        raise


def _hang_up(response: urllib3.BaseHTTPResponse) -> None:
    """Shut the upstream socket both ways: the read blocked in an abandoned thread returns at
    once, and the server sees the connection end even if that thread still holds the file
    object that would otherwise keep the descriptor open."""
    sock = getattr(response.connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _length(response: urllib3.BaseHTTPResponse) -> int | None:
    value = response.headers.get("content-length")
    return int(value) if value and value.isdigit() else None


async def _read_text(
    response: urllib3.BaseHTTPResponse, limit: int, window: int | None
) -> TextContent:
    try:
        data = await _read(response, limit + 1)
    finally:
        response.close()
    data = data[:window] if window is not None else data  # a 200 whole file for a window at 0
    if len(data) > limit:
        raise GatewayError(
            413, "TEXT_TOO_LARGE", f"The file exceeds {limit} bytes; read it as a stream."
        )
    try:
        return TextContent(content=data.decode("utf-8"), size=len(data))
    except UnicodeDecodeError:
        raise GatewayError(
            422, "INVALID_UTF8", "The file is not valid UTF-8; read it as bytes."
        ) from None


def _download_headers(
    response: urllib3.BaseHTTPResponse, path: str, window: _Window | None
) -> dict[str, str]:
    # Always: no sniffing, and a sandbox should anything still be rendered.
    headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
    for name in ("content-length", "last-modified", "content-range"):
        if name in response.headers:
            headers[name.title()] = response.headers[name]
    size = _length(response)
    if window is not None and window.length is not None and size is not None:
        headers["Content-Length"] = str(min(size, window.length))  # a 200 cut to the window
    kind = _content_type(path)
    if kind in INLINE_TYPES:
        headers["Content-Type"] = kind
    else:
        filename = quote(path.rsplit("/", 1)[-1])
        headers["Content-Type"] = "application/octet-stream"
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{filename}"
    return headers


def _content_type(path: str) -> str:
    return mimetypes.guess_type(path.rsplit("/", 1)[-1])[0] or "application/octet-stream"


def _upload_body(
    upload: Upload, content: str | None, content_base64: str | None, limit: int
) -> tuple[AsyncIterator[bytes], int | None]:
    given = [x is not None for x in (content, content_base64)].count(True)
    streamed = upload.present
    if given + streamed != 1:
        raise bad_request(
            "INVALID_PARAMS",
            "Give exactly one of: a raw body (application/octet-stream), content, content_base64.",
        )
    if streamed:
        if upload.declared_size is not None and upload.declared_size > limit:
            raise _too_large(limit)
        return upload.chunks, upload.declared_size
    data = content.encode() if content is not None else _b64(content_base64 or "")
    return _once(data), len(data)


def _b64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("INVALID_PARAMS", "content_base64 is not valid base64.") from None


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class _Counter:
    """Counts bytes as they pass and stops the upload once it crosses the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0

    async def wrap(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.total += len(chunk)
            if self.total > self.limit:
                raise _too_large(self.limit)  # aborts the PUT: Databricks keeps nothing
            yield chunk


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, "UPLOAD_TOO_LARGE", f"The upload exceeds {limit} bytes.")


def _entry(raw: dict[str, Any]) -> Entry:
    modified = raw.get("last_modified")
    return Entry(
        name=raw.get("name", ""),
        path=raw.get("path", ""),
        is_directory=bool(raw.get("is_directory")),
        size=None if raw.get("is_directory") else raw.get("file_size"),
        modified=_ms_to_iso(modified) if isinstance(modified, int) else None,
    )


def _tree(runtime: Runtime, root: str) -> list[Entry]:
    """Every entry under `root`, children before parents; refuses trees over the cap."""
    ordered: list[Entry] = []
    pending = [root]
    while pending:
        listing = list_directory(runtime, pending.pop())
        for entry in listing.entries:
            ordered.append(entry)
            if entry.is_directory:
                pending.append(entry.path)
        if len(ordered) > MAX_RECURSIVE_DELETE or listing.next_page_token:
            raise GatewayError(
                413,
                "TOO_MANY_ENTRIES",
                f"Recursive delete is limited to {MAX_RECURSIVE_DELETE} entries.",
            )
    return sorted(ordered, key=lambda e: e.path.count("/"), reverse=True)


def _ms_to_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _http_date_to_iso(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return (
            email.utils.parsedate_to_datetime(value)
            .astimezone(UTC)
            .isoformat()
            .replace("+00:00", "Z")
        )
    except (TypeError, ValueError):
        return None
