"""Files in Unity Catalog volumes: paths confined to the allowed roots, safe downloads.

Bytes move through `gateway.files_api` (the raw Files API, constant memory); metadata and
directory calls go through the SDK. Downloads are served inline only for inert types.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import mimetypes
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import quote

from databricks.sdk.errors import NotFound
from pydantic import BaseModel, Field

from gateway import answers, files_api
from gateway.auth import get_workspace_client
from gateway.errors import (
    GatewayError,
    UpstreamBadResponse,
    bad_request,
)
from gateway.paths import confine
from gateway.registry import ByteStream, Upload
from gateway.runtime import Runtime
from gateway.sqltypes import MAX_SAFE_INTEGER

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

PathParam = Annotated[str, Field(description="/Volumes/<catalog>/<schema>/<volume>/... path")]


# A size in bytes as every caller holds it exactly (JavaScript's numbers stop at 2^53 - 1): a
# larger one, or a negative one, is Databricks' answer gone wrong.
Size = Annotated[int, Field(ge=0, le=MAX_SAFE_INTEGER)]


class Entry(BaseModel):
    name: str
    path: str
    is_directory: bool
    size: Size | None = None
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
    size: Size | None = None
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
        answer = api.do("GET", f"/api/2.0/fs/directories{files_api.quoted(path)}", query=query)
        page = answers.directory_page(answer, "a directory listing")
        entries += [_entry(raw, path) for raw in page.get("contents") or []]  # null: none
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
    client = get_workspace_client()
    try:
        meta = client.files.get_metadata(path)
    except NotFound:
        pass
    else:
        _not_a_page(meta.content_type, path)
        return answers.built(
            FileInfo,
            exists=True,
            path=path,
            size=meta.content_length,
            modified=_http_date_to_iso(meta.last_modified),
            content_type=_content_type(path),
        )
    try:
        # The SDK's get_directory_metadata, with the one header that tells a page from it.
        found = client.api_client.do(
            "HEAD",
            f"/api/2.0/fs/directories{files_api.quoted(path)}",
            response_headers=["content-type"],
        )
    except NotFound:
        return FileInfo(exists=False, path=path)
    _not_a_page(found.get("content-type") if isinstance(found, dict) else None, path)
    return FileInfo(exists=True, path=path, is_directory=True)


def _not_a_page(content_type: str | None, path: str) -> None:
    """A HEAD answered by a login or proxy page (200, text/html) says nothing of `path`."""
    if files_api.is_html(content_type or ""):
        raise UpstreamBadResponse(f"HEAD of {path} answered an HTML page")


def delete_file(runtime: Runtime, path: PathParam, recursive: bool = False) -> Deleted:
    """Delete a file, or a directory: an empty one as is, a non-empty one only with
    `recursive: true` (at most 10,000 entries, all listed and checked to lie inside it before
    anything is deleted)."""
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
    download = await files_api.open_download(runtime, path, offset, length)
    if encoding is not None:
        return _text(await download.text(runtime.settings.max_text_read_bytes), runtime)
    headers = _download_headers(download, path)
    return ByteStream(download.chunks(runtime), headers.pop("Content-Type"), headers)


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
    await files_api.upload(runtime, path, counter.wrap(body), declared, overwrite)
    return Written(path=path, size=counter.total)


# --- helpers -----------------------------------------------------------------------------------


def _confine(runtime: Runtime, path: str) -> str:
    settings = runtime.settings
    return confine(path, settings.allowed_roots, settings.default_volume)


def _text(data: bytes, runtime: Runtime) -> TextContent:
    limit = runtime.settings.max_text_read_bytes
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


def _download_headers(download: files_api.Download, path: str) -> dict[str, str]:
    # Always: no sniffing, and a sandbox should anything still be rendered.
    headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
    for name in ("last-modified", "content-range"):
        if value := download.header(name):
            headers[name.title()] = value
    if download.size is not None:
        headers["Content-Length"] = str(download.size)
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


def _entry(raw: dict[str, Any], directory: str) -> Entry:
    """An entry of `directory`'s listing. One that is not a child of it is a bad answer, never
    passed on: a recursive delete deletes the paths its listings name."""
    path = raw.get("path")
    name = _child_name(path, directory) if isinstance(path, str) else None
    if name is None:
        raise UpstreamBadResponse(f"The listing of {directory} named an entry outside it")
    modified = raw.get("last_modified")
    return answers.built(
        Entry,
        name=raw.get("name") or name,
        path=path,
        is_directory=bool(raw.get("is_directory")),
        size=None if raw.get("is_directory") else raw.get("file_size"),
        modified=_ms_to_iso(modified) if isinstance(modified, int) else None,
    )


def _child_name(path: str, directory: str) -> str | None:
    """The last part of Databricks' `path` when it names a child of `directory`, else None: a
    directory's path may end in "/", and catalog, schema and volume may differ in case (Unity
    Catalog may lowercase names: not verified), every other segment exactly."""
    parent, _, name = path.rstrip("/").rpartition("/")
    if name in ("", ".", ".."):
        return None
    theirs, ours = parent.split("/"), directory.split("/")
    volume_end = 5  # "", "Volumes", catalog, schema, volume
    same = len(theirs) == len(ours) and all(
        a == b or (i < volume_end and a.lower() == b.lower())
        for i, (a, b) in enumerate(zip(theirs, ours, strict=True))
    )
    return name if same else None


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


# The ops of this family the gateway serves (gateway/ops/__init__.py gathers every family's).
OPS: list[Callable[..., Any]] = [
    list_directory,
    create_directory,
    file_info,
    read_file,
    write_file,
    delete_file,
]
