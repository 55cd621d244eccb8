"""Deadlines hold for every op, streamed or not, whatever the upstream or the caller trickles.

No timed assertions: each test asserts the status (or the cut stream) and that the upstream saw
the cancel; client timeouts are generous hang guards only.
"""

from __future__ import annotations

import select
import socket

import httpx
import orjson
import pytest

from gateway.testing import Fault
from tests.support import run, wait_until

VOL = "/Volumes/main/app/files"


def upload(client, path, data):
    return client.post(
        "/run",
        params={"op": "write_file", "path": path},
        content=data,
        headers={"content-type": "application/octet-stream"},
    )


def test_a_download_trickled_past_the_stream_budget_is_cut_and_the_upstream_closed(
    gateway, workspace
):
    _, client = gateway(stream_timeout_seconds=1)
    assert upload(client, f"{VOL}/slow.bin", b"x" * 200 * 1024).status_code == 200
    workspace.trickle_seconds = 0.05  # 1 KiB per 50 ms: 10 s for the file
    with pytest.raises(httpx.RemoteProtocolError):  # fewer bytes than Content-Length
        client.post("/run", json={"op": "read_file", "path": f"{VOL}/slow.bin"}, timeout=30)
    # The fake's next write after our close fails: it saw the download abandoned.
    wait_until(lambda: workspace.aborted_downloads == [f"{VOL}/slow.bin"])
    workspace.trickle_seconds = 0.0
    assert run(client, "me").status_code == 200


def test_slow_download_headers_past_the_request_deadline_are_504(gateway, workspace):
    _, client = gateway(request_timeout_seconds=1)
    upload(client, f"{VOL}/late.bin", b"late")
    workspace.inject(Fault(path="/fs/files", method="GET", delay=6))
    response = client.post("/run", json={"op": "read_file", "path": f"{VOL}/late.bin"})
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (504, "GATEWAY_TIMEOUT")


def test_an_ndjson_stream_past_its_budget_ends_with_an_error_line_and_cancels(gateway, workspace):
    workspace.warehouse.chunk_rows = 1
    _, client = gateway(stream_timeout_seconds=2)
    workspace.inject(Fault(path="/external/", delay=1.5, times=None))
    response = client.post(
        "/run",
        json={
            "op": "run_query",
            "statement": "SELECT * FROM range(10) AS t(i)",
            "disposition": "EXTERNAL_LINKS",
        },
        headers={"Accept": "application/x-ndjson"},
        timeout=60,
    )
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    assert lines[-1]["error"]["code"] == "GATEWAY_TIMEOUT"
    assert len(lines) < 12  # header + 10 rows + summary had it finished
    assert lines[0]["statement_id"] in workspace.warehouse.canceled


def answered(sock: socket.socket, wait: float) -> bool:
    return bool(select.select([sock], [], [], wait)[0])


def raw_upload(server_url: str, path: str, pieces, pause) -> bytes:
    """A chunked upload over a raw socket, calling `pause(sock)` between pieces."""
    host, port = server_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.settimeout(30)  # a hang guard
        sock.sendall(
            f"POST /run?op=write_file&path={path} HTTP/1.1\r\nHost: gw\r\n"
            "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        try:
            for piece in pieces:
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                pause(sock)
                if answered(sock, 0):
                    break  # the gateway has spoken: read what it said
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway answered and closed: read what it said
        return read_response(sock)


def read_response(sock: socket.socket) -> bytes:
    """A whole response: headers, then Content-Length bytes (they may come in several reads)."""
    data = b""
    while b"\r\n\r\n" not in data:
        if not (more := sock.recv(65536)):
            return data
        data += more
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    length = next(
        (
            int(line.split(":", 1)[1])
            for line in head.split("\r\n")
            if line.startswith("content-length:")
        ),
        0,
    )
    while len(data.split(b"\r\n\r\n", 1)[1]) < length:
        if not (more := sock.recv(65536)):
            break
        data += more
    return data


def test_an_upload_that_stalls_is_408_and_stores_nothing(gateway, workspace):
    server, _ = gateway(upload_idle_seconds=1)

    def stall(sock: socket.socket) -> None:  # send nothing more until the gateway answers
        answered(sock, 30)  # a hang guard

    answer = raw_upload(server.url, f"{VOL}/idle.bin", [b"x" * 100], stall)
    assert answer.startswith(b"HTTP/1.1 408")
    assert b'"UPLOAD_IDLE"' in answer
    wait_until(workspace.uploads_settled)
    assert not workspace.files_root.joinpath("main/app/files/idle.bin").exists()


def test_a_steady_upload_past_the_stream_budget_is_504_and_stores_nothing(gateway, workspace):
    server, _ = gateway(stream_timeout_seconds=1, upload_idle_seconds=30)
    # A piece every 0.1 s (or sooner, once the gateway has answered).
    answer = raw_upload(
        server.url, f"{VOL}/steady.bin", [b"y" * 1024] * 40, lambda sock: answered(sock, 0.1)
    )
    assert answer.startswith(b"HTTP/1.1 504")
    assert b'"GATEWAY_TIMEOUT"' in answer
    wait_until(workspace.uploads_settled)
    assert not workspace.files_root.joinpath("main/app/files/steady.bin").exists()


def quiet_for(count, seconds: float):
    """A condition: `count()` has not changed for `seconds` (a hang guard bounds the wait)."""
    import time

    last = {"value": None, "since": 0.0}

    def condition() -> bool:
        value, now = count(), time.monotonic()
        if value != last["value"]:
            last.update(value=value, since=now)
        return now - last["since"] >= seconds

    return condition


@pytest.mark.parametrize(
    ("op", "path", "params"),
    [
        ("list_catalogs", "/unity-catalog/catalogs", {}),  # the SDK's list iterator
        ("list_tables", "/unity-catalog/tables", {"catalog": "main", "schema": "app"}),
    ],
)
def test_an_endless_pagination_stops_paging_at_the_deadline(gateway, workspace, op, path, params):
    # Every page names a next one: the SDK's iterator would page in its worker thread for as
    # long as the process lives. Past the request's deadline it sends no more requests.
    endless = orjson.dumps({path.rsplit("/", 1)[1]: [], "next_page_token": "again"})
    workspace.inject(
        Fault(path=path, body=endless, content_type="application/json", delay=0.1, times=None)
    )
    _, client = gateway(lean_upstream=False, request_timeout_seconds=1)
    error = run(client, op, **params).json()["error"]
    assert (error["status"], error["code"]) == (504, "GATEWAY_TIMEOUT")

    def pages() -> int:
        return sum(1 for r in workspace.requests if r.path.endswith(path))

    wait_until(quiet_for(pages, 1.0))
