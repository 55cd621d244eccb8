"""Listening: a unix-domain socket (GATEWAY_UDS), worker processes (GATEWAY_WORKERS), and how a
response is written to its connection."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil

from gateway.app import create_app
from gateway.serve import HeadWithBody, _BodyPieces, bind, server_for
from gateway.testing import DEMO
from tests.support import run, settings_for, wait_until

ROOT = Path(__file__).resolve().parent.parent
SECRET = {"X-Gateway-Secret": "uds-secret"}


def test_serves_health_and_an_op_over_a_unix_socket(workspace, tmp_path):
    path = tmp_path / "gateway.sock"
    settings = settings_for(workspace, uds=str(path), secret="uds-secret")
    sock = bind(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # only this user may connect
    server = server_for(create_app(settings), settings)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        wait_until(lambda: server.started)
        transport = httpx.HTTPTransport(uds=str(path))
        with httpx.Client(transport=transport, base_url="http://gateway", headers=SECRET) as c:
            assert c.get("/health").json()["status"] == "ok"
            me = c.post("/run", json={"op": "me"}).json()["result"]
            assert me["user_name"] == "gateway-service@example.com"
            assert (
                c.post("/run", json={"op": "me"}, headers={"X-Gateway-Secret": "no"}).status_code
                == 401
            )
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def test_workers_share_one_socket_and_stop_together(workspace, tmp_path):
    path = tmp_path / "gateway.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "GATEWAY_"))}
    env.update(
        GATEWAY_UDS=str(path),
        GATEWAY_WORKERS="2",
        GATEWAY_SECRET="uds-secret",
        DATABRICKS_HOST=workspace.url,
        DATABRICKS_TOKEN=DEMO.service_token,
        DATABRICKS_CONFIG_FILE=os.environ["DATABRICKS_CONFIG_FILE"],
    )
    process = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=ROOT, env=env)
    try:
        parent = psutil.Process(process.pid)
        wait_until(lambda: path.is_socket() and len(serving(parent)) == 2, guard_seconds=60)
        transport = httpx.HTTPTransport(uds=str(path))
        # Spawned workers import everything afresh: the first answer may take a while.
        with httpx.Client(
            transport=transport, base_url="http://gateway", headers=SECRET, timeout=60
        ) as c:
            assert c.get("/health").status_code == 200
            for _ in range(10):
                assert c.post("/run", json={"op": "me"}).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert not path.exists()
    finally:
        if process.poll() is None:
            process.kill()


def serving(parent: psutil.Process) -> list[psutil.Process]:
    # Spawned workers, not multiprocessing's resource tracker.
    return [c for c in parent.children() if "resource_tracker" not in " ".join(c.cmdline())]


class RecordingTransport(asyncio.Transport):
    """A connection's transport that keeps each call that would reach the socket."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[bytes]]] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", [data]))

    def writelines(self, list_of_data: list[bytes]) -> None:  # type: ignore[override]
        self.calls.append(("writelines", list(list_of_data)))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def test_a_head_and_the_body_sent_in_the_same_turn_go_out_in_one_write():
    async def main() -> list[tuple[str, list[bytes]]]:
        raw = RecordingTransport()
        transport = HeadWithBody(raw, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b'{"result": 1}')
        await asyncio.sleep(0)  # the end of the turn flushes nothing more
        transport.write(b"more")
        return raw.calls

    assert asyncio.run(main()) == [
        ("writelines", [b"HTTP/1.1 200 OK\r\n\r\n", b'{"result": 1}']),
        ("write", [b"more"]),
    ]


def test_a_head_whose_body_is_not_ready_goes_out_alone_at_the_end_of_the_turn():
    async def main() -> tuple[list[tuple[str, list[bytes]]], list[tuple[str, list[bytes]]]]:
        raw = RecordingTransport()
        transport = HeadWithBody(raw, asyncio.get_running_loop())
        transport.write(b"head")
        held = list(raw.calls)
        await asyncio.sleep(0)
        transport.write(b"body")
        return held, raw.calls

    held, calls = asyncio.run(main())
    assert held == []
    assert calls == [("write", [b"head"]), ("write", [b"body"])]


def test_closing_sends_a_held_head_first_and_a_closed_transport_gets_nothing():
    async def main() -> tuple[list[tuple[str, list[bytes]]], list[tuple[str, list[bytes]]]]:
        raw = RecordingTransport()
        transport = HeadWithBody(raw, asyncio.get_running_loop())
        transport.write(b"head")
        transport.close()
        gone = RecordingTransport()
        late = HeadWithBody(gone, asyncio.get_running_loop())
        late.write(b"head")
        gone.closed = True  # the caller left before the end of the turn
        await asyncio.sleep(0)
        return raw.calls, gone.calls

    closed, gone = asyncio.run(main())
    assert closed == [("write", [b"head"])]
    assert gone == []


def test_a_download_whose_body_trickles_gets_its_head_at_once(gateway, workspace):
    # The head must not wait for the first body piece: the gateway reads 2 MiB a piece, so here
    # that piece is the whole file, 20 s away. The caller has the head and leaves at once, and
    # the fake sees its download aborted: had the head waited, the download would have ended.
    _, client = gateway()
    path = "/Volumes/main/app/files/trickle.bin"
    assert run(client, "write_file", path=path, content="t" * (400 * 1024)).status_code == 200
    workspace.trickle_seconds = 0.05  # 1 KiB per 50 ms
    try:
        with client.stream("POST", "/run", json={"op": "read_file", "path": path}) as response:
            assert response.status_code == 200
            assert response.headers["content-length"] == str(400 * 1024)
        wait_until(lambda: len(workspace.aborted_downloads) == 1)
    finally:
        workspace.trickle_seconds = 0.0


def _send_in_writes(url: str, head: bytes, writes: list[bytes]) -> bytes:
    """One request over a raw socket, its body in separate writes a moment apart (so the server
    reads them as separate pieces, not one), and the whole answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(head)
        for write in writes:
            time.sleep(0.02)
            sock.sendall(write)
        answer = b""
        while more := sock.recv(65536):
            answer += more
    return answer


def test_body_pieces_are_kept_as_parsed_and_joined_in_order_when_several_wait():
    # What uvicorn does with a request body's buffer (+=, len, bytes), without copying.
    one, two = b"a" * 1000, b"b" * 10
    pieces = _BodyPieces()
    pieces += one
    assert len(pieces) == 1000
    assert bytes(pieces) is one  # the one piece a read nearly always leaves: not copied
    pieces += two
    assert len(pieces) == 1010
    assert bytes(pieces) == one + two


def test_an_upload_in_many_reads_is_stored_byte_for_byte(gateway, workspace):
    # Each write is its own socket read: the pieces must reach the Files API whole and in order.
    server, client = gateway(secret="uds-secret")
    writes = [bytes([i]) * (1000 + i) for i in range(40)]
    path = "/Volumes/main/app/files/pieces.bin"
    size = sum(map(len, writes))
    head = (
        f"POST /run?op=write_file&path={path}&overwrite=true HTTP/1.1\r\nHost: gateway\r\n"
        "Connection: close\r\nContent-Type: application/octet-stream\r\n"
        "X-Gateway-Secret: uds-secret\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    answer = _send_in_writes(server.url, head, writes)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    stored = client.post("/run", json={"op": "read_file", "path": path}, headers=SECRET)
    assert stored.content == b"".join(writes)
