"""A small load generator: c keep-alive HTTP/1.1 connections, each sending one request after the
other and timing each answer from inside the client.

It costs a few tens of µs per request, so on a 2-core machine shared with the gateway and the
fake it takes as little CPU from them as a load generator can; the direct-SDK side needs none
(the SDK in threads is itself the workload being measured).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
    uvloop = None


@dataclass
class Load:
    latencies: list[float]  # seconds, one per request, measured in the client
    wall: float  # seconds from the first request sent to the last answer read

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.wall


def request_bytes(host: str, port: int, body: dict[str, object], headers: dict[str, str]) -> bytes:
    payload = orjson.dumps(body)
    lines = [
        "POST /run HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def _answer(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    if status != 200:
        raise RuntimeError(f"{status}: {body[:200]!r}")


Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def _run(connect: Connect, request: bytes, total: int, concurrency: int) -> Load:
    connections = [await connect() for _ in range(concurrency)]
    for reader, writer in connections:  # warm-up: one answer on every connection, untimed
        writer.write(request)
        await _answer(reader)
    latencies: list[float] = []
    remaining = total

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            writer.write(request)
            await _answer(reader)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(r, w) for r, w in connections))
    wall = time.perf_counter() - started
    for _, writer in connections:
        writer.close()
    return Load(latencies, wall)


def run_load(
    url: str, body: dict[str, object], headers: dict[str, str], total: int, concurrency: int
) -> Load:
    """`url`: http://host:port, or unix:/path for a unix-domain socket."""
    connect: Connect
    if url.startswith("unix:"):
        path = url.removeprefix("unix:")
        request = request_bytes("localhost", 80, body, headers)
        connect = functools.partial(asyncio.open_unix_connection, path)
    else:
        host, port = url.removeprefix("http://").split(":")
        request = request_bytes(host, int(port), body, headers)
        connect = functools.partial(asyncio.open_connection, host, int(port))
    coroutine = _run(connect, request, total, concurrency)
    if uvloop is not None:
        return uvloop.run(coroutine)
    return asyncio.run(coroutine)
