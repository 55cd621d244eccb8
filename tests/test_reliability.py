"""Reliability under load and faults: identities never mix, resources stay bounded."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import httpx
import psutil

from gateway.testing import DEMO, Fault
from tests.support import run, wait_until

IDENTITIES = {
    "alice": ({"X-Databricks-Token": DEMO.alice_token}, "alice@example.com", True),
    "bob": ({"X-Databricks-Token": DEMO.bob_token}, "bob@example.com", False),
    "carol": ({"X-Databricks-Token": "dapi-carol"}, "carol@example.com", False),
    "service": ({}, "gateway-service@example.com", False),
}


def mixed_load(url: str, total: int, concurrency: int) -> list[tuple[str, str, httpx.Response]]:
    names = list(IDENTITIES)

    async def main() -> list[tuple[str, str, httpx.Response]]:
        limits = httpx.Limits(max_connections=concurrency)
        semaphore = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:

            async def one(i: int) -> tuple[str, str, httpx.Response]:
                who, op = names[i % len(names)], ("me", "list_catalogs")[(i // len(names)) % 2]
                async with semaphore:
                    return (
                        who,
                        op,
                        await http.post("/run", json={"op": op}, headers=IDENTITIES[who][0]),
                    )

            return await asyncio.gather(*(one(i) for i in range(total)))

    return asyncio.run(main())


def assert_isolated(results: list[tuple[str, str, httpx.Response]]) -> None:
    for who, op, response in results:
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        _, user_name, sees_finance = IDENTITIES[who]
        if op == "me":
            assert result["user_name"] == user_name
        else:
            assert ("finance" in {c["name"] for c in result}) is sees_finance


def test_mixed_identity_requests_at_concurrency_32(gateway, workspace):
    # 8 rounds of 32 interleaved callers over a cache of 2 for 3 identities: every round
    # evicts. Volume belongs to bench/.
    workspace.add_user("dapi-carol", "carol@example.com")
    server, _ = gateway(auth_mode="auto", client_cache_size=2)
    results = mixed_load(server.url, total=256, concurrency=32)
    assert len(results) == 256
    assert_isolated(results)
    assert server.runtime.backend.cached_user_clients <= 2  # three user identities, bound 2


def test_mixed_identities_through_the_tools_core_backend(tools_core, gateway, workspace):
    workspace.add_user("dapi-carol", "carol@example.com")
    server, _ = gateway(auth_mode="auto", auth_backend="tools-core")
    results = mixed_load(server.url, total=256, concurrency=32)
    assert len(results) == 256
    assert_isolated(results)


def test_1000_mixed_identities_through_the_installed_tools_core(
    installed_tools_core, gateway, workspace
):
    workspace.add_user("dapi-carol", "carol@example.com")
    server, _ = gateway(auth_mode="auto", auth_backend="tools-core")
    results = mixed_load(server.url, total=1000, concurrency=16)
    assert len(results) == 1000
    assert_isolated(results)


def connections_to(port: int) -> int:
    return sum(
        1
        for c in psutil.Process(os.getpid()).net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def test_faults_leave_threads_and_sockets_bounded_and_the_gateway_healthy(gateway, workspace):
    _, client = gateway(sdk_retry_timeout_seconds=1, request_timeout_seconds=1, thread_limit=4)
    fake_port = int(workspace.url.rsplit(":", 1)[1])
    # The 1 s deadline is tight for a loaded machine's first call (it builds the SDK client):
    # the baseline is taken once calls succeed, which is what it must measure from.
    wait_until(lambda: run(client, "list_catalogs").status_code == 200)
    for _ in range(20):
        assert run(client, "list_catalogs").status_code == 200
    threads, sockets = threading.active_count(), connections_to(fake_port)
    faults = [
        Fault(path="/catalogs", status=429, times=3),
        Fault(path="/catalogs", status=503, times=3),
        Fault(path="/catalogs", status=500, times=3),
        Fault(path="/catalogs", drop=True, times=3),
        Fault(path="/catalogs", delay=2, times=2),  # past the 1 s deadline
    ]
    for fault in faults:
        workspace.inject(fault)
        for _ in range(fault.times or 1):
            response = run(client, "list_catalogs")
            assert response.status_code in (200, 429, 502, 503, 504)
            assert response.json().get("error", {}).get("code") != "INTERNAL_ERROR"
    workspace.clear_faults()

    def bounded() -> bool:
        # The worker threads are capped at 4; the SDK's pool bounds its sockets.
        return threading.active_count() <= threads + 4 and connections_to(fake_port) <= sockets + 10

    wait_until(bounded)  # slow calls the deadline abandoned finish within the SDK's own timeouts
    for _ in range(20):
        assert run(client, "list_catalogs").status_code == 200
    assert client.get("/health").status_code == 200
    assert bounded()


def test_a_slow_body_and_an_oversize_body_do_not_block_other_requests(gateway):
    server, client = gateway(max_upload_bytes=1024 * 1024)
    stop = threading.Event()
    slow_result: list[int] = []

    def slow_upload() -> None:
        def trickle():
            while not stop.is_set():
                yield b"x"
                time.sleep(0.05)

        response = httpx.post(
            f"{server.url}/run",
            params={"op": "write_file", "path": "/Volumes/main/app/files/slow.bin"},
            content=trickle(),
            headers={"content-type": "application/octet-stream"},
            timeout=30,
        )
        slow_result.append(response.status_code)

    def oversize() -> int:
        body = (b"y" * 65536 for _ in range(100))
        return httpx.post(
            f"{server.url}/run",
            params={"op": "write_file", "path": "/Volumes/main/app/files/big.bin"},
            content=body,
            headers={"content-type": "application/octet-stream"},
            timeout=30,
        ).status_code

    slow = threading.Thread(target=slow_upload)
    slow.start()
    statuses: list[int] = []
    big = threading.Thread(target=lambda: statuses.append(oversize()))
    big.start()
    try:
        for _ in range(20):
            assert run(client, "me").status_code == 200
        assert slow.is_alive()  # everything above was served while the slow body trickled in
    finally:
        stop.set()
        slow.join(30)
        big.join(30)
    assert statuses == [413]
    assert slow_result == [200]  # and the slow upload itself still completes


def test_malformed_requests_get_clear_4xx(gateway):
    _, client = gateway()
    cases = [
        ({"content": b"\xff\xfe", "headers": {"content-type": "application/json"}}, 400),
        ({"content": b"null", "headers": {"content-type": "application/json"}}, 400),
        ({"content": b"[1]", "headers": {"content-type": "application/json"}}, 400),
        ({"content": b"{}", "headers": {"content-type": "application/xml"}}, 415),
        (
            {
                "content": b'{"op": "me"}',
                "headers": {"content-type": "application/json", "content-length": "x"},
            },
            400,
        ),
    ]
    for kwargs, status in cases:
        try:
            response = client.post("/run", **kwargs)
        except httpx.LocalProtocolError:
            continue  # the client refuses to send it at all
        assert response.status_code == status, (kwargs, response.text)
        assert response.json()["error"]["code"]
    huge = client.post("/run", json={"op": "me"}, headers={"X-Padding": "p" * 200_000})
    assert (huge.status_code, huge.json()["error"]["code"]) == (431, "HEADERS_TOO_LARGE")
    assert client.get("/health").status_code == 200


def test_connections_that_never_finish_a_request_head_are_closed(gateway):
    server, client = gateway(header_timeout_seconds=1)
    port = int(server.url.rsplit(":", 1)[1])
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    partial = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
    for sock in partial:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    for sock in silent + partial:
        sock.settimeout(30)  # a hang guard: the server closes them after ~1 s
        assert sock.recv(1024) == b""  # closed by the gateway, with no response
        sock.close()
    assert client.get("/health").status_code == 200  # complete requests are unaffected


def test_a_kept_alive_connection_whose_next_head_stalls_is_closed(gateway):
    # The first request's head came whole and was answered; the second's first bytes start the
    # clock on their own, in a later read.
    server, _ = gateway(header_timeout_seconds=1)
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(30)  # a hang guard: the server closes it after ~1 s
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        assert sock.recv(4096) == b""  # closed by the gateway, with no response


def test_a_slow_but_steady_request_head_within_the_timeout_is_served(gateway):
    server, _ = gateway(header_timeout_seconds=5)
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(30)
        for part in (b"GET /health HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
            sock.sendall(part)
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")


def stalled_upload(url: str, path: str) -> socket.socket:
    """An upload that sent its head and one chunk, then nothing (held open by the caller)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        f"POST /run?op=write_file&path={path} HTTP/1.1\r\nHost: gw\r\n"
        "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n".encode()
    )
    return sock


def test_slow_uploads_cannot_starve_api_calls_or_downloads(gateway, workspace):
    server, client = gateway(max_concurrent_transfers=4, upload_idle_seconds=60)
    vol = "/Volumes/main/app/files"
    assert run(client, "write_file", path=f"{vol}/small.txt", content="ok").status_code == 200
    held = [stalled_upload(server.url, f"{vol}/held{i}.bin") for i in range(4)]
    try:
        wait_until(lambda: sum(r.method == "PUT" for r in workspace.requests) >= 5)
        busy = client.post(
            "/run",
            params={"op": "write_file", "path": f"{vol}/one-more.bin"},
            content=b"data",
            headers={"content-type": "application/octet-stream"},
        )
        assert (busy.status_code, busy.json()["error"]["code"]) == (503, "BUSY")
        assert busy.headers["retry-after"] == "1"
        assert run(client, "me").status_code == 200
        got = client.post("/run", json={"op": "read_file", "path": f"{vol}/small.txt"})
        assert (got.status_code, got.content) == (200, b"ok")
    finally:
        for sock in held:
            sock.close()
    # The slots come back once the stalled callers are gone.
    wait_until(
        lambda: run(client, "write_file", path=f"{vol}/after.txt", content="x").status_code == 200
    )


def test_the_fake_keeps_quiet_about_callers_that_hang_up_not_about_its_own_errors(
    workspace, capsys
):
    # The tests of callers leaving reset connections on purpose: their tracebacks on stderr
    # buried the fake's real failures (a crash of the fake is how the gateway gets a 503).
    from gateway.testing._http import Server

    server = Server(("127.0.0.1", 0), workspace)
    try:
        for hang_up in (ConnectionResetError(104, "reset"), BrokenPipeError(32, "broken pipe")):
            try:
                raise hang_up
            except ConnectionError:
                server.handle_error(None, ("127.0.0.1", 1))
        assert capsys.readouterr().err == ""
        try:
            raise NotADirectoryError("a bug of the fake")
        except OSError:
            server.handle_error(None, ("127.0.0.1", 1))
        assert "NotADirectoryError: a bug of the fake" in capsys.readouterr().err
    finally:
        server.server_close()


def test_the_fake_keeps_a_bounded_record_of_the_requests_it_saw(workspace):
    # A fake left running (local mode, a benchmark section) once kept every request it saw.
    workspace.max_recorded = 4
    for i in range(11):
        httpx.get(f"{workspace.url}/api/2.0/fs/directories/Volumes/x{i}")
    assert 2 <= len(workspace.requests) <= 4
    assert workspace.requests[-1].path == "/api/2.0/fs/directories/Volumes/x10"


def test_uploads_are_counted_settled_past_the_fakes_record_bound(workspace):
    # Once told by the requests it kept: past the bound, the PUTs it forgot made it wait forever.
    workspace.max_recorded = 4
    headers = {"Authorization": f"Bearer {DEMO.service_token}"}
    for i in range(11):
        url = f"{workspace.url}/api/2.0/fs/files/Volumes/main/app/files/settled-{i}.txt"
        assert httpx.put(url, content=b"x", headers=headers).status_code == 204
    assert len(workspace.requests) <= 4
    # A PUT is counted handled just after its 204 goes out: wait for that (the old count never
    # came true here).
    wait_until(workspace.uploads_settled)
