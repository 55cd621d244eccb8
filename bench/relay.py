"""A bare relay for the files section: the floor that any ASGI relay under uvicorn starts from.

No framework, no checks, no deadlines, no error mapping: an ASGI app under uvicorn with the
gateway's server stack (uvloop, httptools) that copies a request body into a PUT to the fake's
Files API, and a GET's body back out, over a raw asyncio connection per transfer. What the
gateway spends above this is what its own layers cost.

    python relay.py FAKE_URL TOKEN PORT
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit

import uvicorn

PIECE = 1024 * 1024  # the gateway's download read size

Scope = dict[str, Any]


class Relay:
    def __init__(self, fake_url: str, token: str) -> None:
        split = urlsplit(fake_url)
        self.host, self.port = split.hostname or "127.0.0.1", split.port or 80
        self.auth = f"Authorization: Bearer {token}\r\n"

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = parse_qs(scope["query_string"].decode()).get("path", [""])[0]
        if scope["path"] == "/download":
            await self.download(path, send)
        elif scope["path"] == "/upload":
            await self.upload(scope, path, receive, send)
        else:
            await respond(send, 200, b"ok")

    async def download(self, path: str, send: Any) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=PIECE)
        try:
            writer.write(
                f"GET /api/2.0/fs/files{path} HTTP/1.1\r\nHost: fake\r\n{self.auth}\r\n".encode()
            )
            remaining = content_length(await reader.readuntil(b"\r\n\r\n"))
            length = str(remaining).encode()
            headers = [(b"content-length", length), (b"content-type", b"application/octet-stream")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            while remaining:
                data = await reader.read(min(remaining, PIECE))
                if not data:
                    raise ConnectionError("the fake closed mid-body")
                remaining -= len(data)
                await send({"type": "http.response.body", "body": data, "more_body": remaining > 0})
        finally:
            writer.close()

    async def upload(self, scope: Scope, path: str, receive: Any, send: Any) -> None:
        size = dict(scope["headers"])[b"content-length"].decode()
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=PIECE)
        try:
            writer.write(
                f"PUT /api/2.0/fs/files{path}?overwrite=true HTTP/1.1\r\nHost: fake\r\n{self.auth}"
                f"Content-Length: {size}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
            )
            more = True
            while more:
                message = await receive()
                writer.write(message.get("body", b""))
                await writer.drain()
                more = message.get("more_body", False)
            status = (await reader.readuntil(b"\r\n\r\n")).split(b" ", 2)[1]
        finally:
            writer.close()
        await respond(send, 200 if status == b"204" else 502, status)


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError("no Content-Length")


async def respond(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    fake_url, token, port = sys.argv[1:4]
    uvicorn.run(
        Relay(fake_url, token),
        host="127.0.0.1",
        port=int(port),
        http="httptools",
        loop="uvloop",
        log_level="warning",
        access_log=False,
    )
