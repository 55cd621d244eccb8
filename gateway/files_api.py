"""The Files API's byte transfers: volume files in and out, chunk by chunk, constant memory.

Bytes move through the raw Files API (`PUT/GET /api/2.0/fs/files{path}`) with the identity's
own auth headers: the SDK's `files.upload` buffers and switches to multipart, and its download
first asks for presigned URLs. Uploads go through an async httpx client (over aiohttp,
`transport.py`); downloads through a blocking urllib3 pool read in worker threads (several
times faster for bytes), each read abandonable: a deadline or a departing caller shuts the
socket under the reading thread.

What the API never sends is refused here, before a caller could take it for a file: a 200 HTML
page (a login or proxy page), a redirect, a range answered with other bytes than asked.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

import anyio
import anyio.to_thread
import httpx
import urllib3

from gateway.auth import get_workspace_client
from gateway.errors import UpstreamBadResponse, error, error_from_response
from gateway.runtime import Runtime
from gateway.sqltypes import MAX_SAFE_INTEGER

# Each read is a worker-thread hop and a send, so bigger reads cost less CPU but hold more memory
# (scratch, 512 MiB downloads in 8 interleaved pairs against 1 MiB reads: the gateway's CPU per
# GiB 0.79x with 2 MiB reads, 0.68x with 4 MiB; gateway RSS over 8 concurrent 256 MiB downloads,
# peak / after: 1 MiB +25 / +18 MiB, 2 MiB +54 / +49, 4 MiB +85 / +73, what stays being the
# worker threads' malloc arenas, reused by the next downloads). 2 MiB is in between: two thirds
# of 4 MiB's CPU saving at two thirds of its peak memory.
DOWNLOAD_CHUNK_BYTES = 2 * 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@dataclass
class Download:
    """An opened download: its metadata now, its bytes as the caller reads them."""

    response: urllib3.BaseHTTPResponse
    window: Window | None

    @property
    def size(self) -> int | None:
        """Bytes the caller gets: the body's length, cut to the window when a 200 was."""
        size = _length(self.response)
        if size is not None and self.window is not None and self.window.length is not None:
            return min(size, self.window.length)
        return size

    def header(self, name: str) -> str | None:
        value = self.response.headers.get(name)
        return str(value) if value is not None else None

    def chunks(self, runtime: Runtime) -> AsyncGenerator[bytes, None]:
        return _relay(self.response, runtime, self.window.length if self.window else None)

    async def text(self, limit: int) -> bytes:
        """Up to `limit` + 1 bytes (one more says "too large"), then the connection closes."""
        try:
            data = await _read(self.response, limit + 1)
        finally:
            self.response.close()
        cap = self.window.length if self.window else None
        return data[:cap] if cap is not None else data  # a 200 whole file for a window at 0


async def open_download(
    runtime: Runtime, path: str, offset: int | None = None, length: int | None = None
) -> Download:
    url, headers = await _file_endpoint(path)
    # The bytes as stored: the length relayed and a range's offsets are theirs, not those of a
    # coded form of them (which a server may send to a request that names no coding).
    headers["Accept-Encoding"] = "identity"
    window = Window(offset or 0, length) if offset is not None or length is not None else None
    if window is not None:
        headers["Range"] = window.header()
    return Download(await _open_download(runtime, url, headers, window), window)


async def upload(
    runtime: Runtime,
    path: str,
    body: AsyncIterator[bytes],
    declared: int | None,
    overwrite: bool,
) -> None:
    url, headers = await _file_endpoint(path)
    headers["Content-Type"] = "application/octet-stream"
    if declared is not None:
        headers["Content-Length"] = str(declared)
    query = {"overwrite": "true" if overwrite else "false"}
    await _put(runtime, url, headers, body, query)


def quoted(path: str) -> str:
    return quote(path, safe="/")


async def _file_endpoint(path: str) -> tuple[str, dict[str, str]]:
    """The raw Files API URL of `path` and the identity's auth headers (one worker hop: the
    client may need building, and an OAuth token refreshing)."""

    def resolve() -> tuple[str, dict[str, str]]:
        config = get_workspace_client().config
        url = f"{config.host.rstrip('/')}/api/2.0/fs/files{quoted(path)}"
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
        if response.status_code not in (200, 201, 204) or is_html(kind):
            raise UpstreamBadResponse(f"upload answered {response.status_code} {kind!r}")
    finally:
        await response.aclose()


def is_html(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() in ("text/html", "application/xhtml+xml")


async def _bounded_read(response: httpx.Response, limit: int) -> bytes:
    buffer = bytearray()
    async for chunk in response.aiter_raw():
        buffer += chunk
        if len(buffer) > limit:
            break
    return bytes(buffer[:limit])


class Window:
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
    runtime: Runtime, url: str, headers: dict[str, str], window: Window | None
) -> urllib3.BaseHTTPResponse:
    abandoned = threading.Event()

    def open_() -> urllib3.BaseHTTPResponse:
        pool = runtime.download_http.for_url(url)
        response = pool.request("GET", url, headers=headers, preload_content=False)
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


def _check_download(response: urllib3.BaseHTTPResponse, window: Window | None) -> None:
    status = response.status
    if status == 416:
        raise error("RANGE_NOT_SATISFIABLE", "The offset is past the end of the file.")
    if status >= 400:
        body = response.read(64 * 1024)  # an error body is small; bounded anyway
        raise error_from_response(status, body, response.headers.get("retry-after"))
    kind = response.headers.get("content-type", "")
    if status not in (200, 206) or is_html(kind):
        raise UpstreamBadResponse(f"download answered {status} {kind!r}")
    coding = response.headers.get("content-encoding", "identity").strip().lower()
    if coding not in ("", "identity"):
        raise UpstreamBadResponse(f"download answered Content-Encoding {coding[:30]!r}")
    length = response.headers.get("content-length")
    if length is not None and not (length.isdigit() and int(length) <= MAX_SAFE_INTEGER):
        # Relayed as it is, a caller would wait for bytes that never come (or refuse it).
        raise UpstreamBadResponse(f"download answered Content-Length {length[:30]!r}")
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
