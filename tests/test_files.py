"""Volume files through the gateway: streaming, limits, atomicity, directories, visibility."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import gzip
import hashlib
import socket
import threading

import orjson
import pytest

from gateway.app import UPLOAD_PIECE_BYTES, RunRequest, _client_body
from gateway.testing import DEMO, Fault
from tests.support import run, scrape, wait_until

VOL = "/Volumes/main/app/files"
MiB = 1024 * 1024


def upload(client, path, data, overwrite=False, headers=None):
    return client.post(
        "/run",
        params={"op": "write_file", "path": path, "overwrite": str(overwrite).lower()},
        content=data,
        headers={"content-type": "application/octet-stream", **(headers or {})},
    )


def download(client, path, **params):
    return client.post("/run", json={"op": "read_file", "path": path, **params})


def on_disk(workspace, path):
    return workspace.files_root.joinpath(*path.split("/")[2:])


@pytest.mark.parametrize("data", [b"", b"\x00", bytes(range(256)), b"hello\r\n" * 1000])
def test_binary_round_trip(gateway, data):
    _, client = gateway()
    written = upload(client, f"{VOL}/rt.bin", data)
    assert written.status_code == 200, written.text
    assert written.json()["result"] == {"path": f"{VOL}/rt.bin", "size": len(data)}
    response = download(client, f"{VOL}/rt.bin")
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-length"] == str(len(data))
    assert response.headers["content-type"] == "application/octet-stream"
    assert "last-modified" in response.headers


def test_a_100_mib_file_streams_both_ways(gateway):
    _, client = gateway()
    block = hashlib.sha256(b"seed").digest() * (MiB // 32)
    sent = hashlib.sha256()

    def body():
        for i in range(100):
            chunk = block[i:] + block[:i]
            sent.update(chunk)
            yield chunk

    assert upload(client, f"{VOL}/big.bin", body()).json()["result"]["size"] == 100 * MiB
    received, size = hashlib.sha256(), 0
    with client.stream(
        "POST", "/run", json={"op": "read_file", "path": f"{VOL}/big.bin"}
    ) as response:
        for chunk in response.iter_bytes():
            received.update(chunk)
            size += len(chunk)
    assert size == 100 * MiB and received.hexdigest() == sent.hexdigest()


def test_json_forms_of_write_file(gateway):
    _, client = gateway()
    assert (
        run(client, "write_file", path=f"{VOL}/t.txt", content="héllo").json()["result"]["size"]
        == 6
    )
    payload = base64.b64encode(b"\xff\x00\xfe").decode()
    assert run(client, "write_file", path=f"{VOL}/b.bin", content_base64=payload).status_code == 200
    assert download(client, f"{VOL}/b.bin").content == b"\xff\x00\xfe"
    bad = run(client, "write_file", path=f"{VOL}/c.bin", content_base64="not base64!")
    assert bad.json()["error"]["code"] == "INVALID_PARAMS"
    both = run(client, "write_file", path=f"{VOL}/c.bin", content="a", content_base64="YQ==")
    assert both.status_code == 400


def test_overwrite_false_keeps_the_existing_file(gateway, workspace):
    _, client = gateway()
    upload(client, f"{VOL}/keep.txt", b"original")
    response = upload(client, f"{VOL}/keep.txt", b"replacement")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "ALREADY_EXISTS"
    assert on_disk(workspace, f"{VOL}/keep.txt").read_bytes() == b"original"
    assert upload(client, f"{VOL}/keep.txt", b"replacement", overwrite=True).status_code == 200
    assert on_disk(workspace, f"{VOL}/keep.txt").read_bytes() == b"replacement"


def test_declared_oversize_upload_is_413_before_reading(gateway, workspace):
    _, client = gateway(max_upload_bytes=1000)
    response = upload(client, f"{VOL}/big.txt", b"x" * 5000)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "UPLOAD_TOO_LARGE"
    assert not any(r.method == "PUT" for r in workspace.requests)


def test_chunked_upload_crossing_the_limit_is_413_and_writes_nothing(gateway, workspace):
    _, client = gateway(max_upload_bytes=10_000)
    response = upload(client, f"{VOL}/big.txt", (b"x" * 1000 for _ in range(50)))
    assert response.status_code == 413
    wait_until(workspace.uploads_settled)
    assert not on_disk(workspace, f"{VOL}/big.txt").exists()
    assert not list(workspace.files_root.glob(".upload-*"))


def test_client_disconnect_mid_upload_leaves_nothing(gateway, workspace):
    server, client = gateway()
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"POST /run?op=write_file&path={VOL}/cut.bin HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {10 * MiB}\r\n\r\n".encode()
        )
        sock.sendall(b"y" * MiB)  # less than a piece: it goes upstream once it has waited
        wait_until(lambda: any(r.method == "PUT" for r in workspace.requests))
    wait_until(workspace.uploads_settled)
    assert not on_disk(workspace, f"{VOL}/cut.bin").exists()
    assert not list(workspace.files_root.glob(".upload-*"))
    assert run(client, "file_info", path=f"{VOL}/cut.bin").json()["result"]["exists"] is False


def test_an_upload_goes_upstream_in_joined_pieces_with_its_bytes_unchanged():
    # The server hands over one socket read at a time (256 KiB at most under uvloop); they are
    # joined into pieces of UPLOAD_PIECE_BYTES before they go to the Files API.
    reads = [bytes([i]) * (256 * 1024) for i in range(20)]
    messages = [
        {"type": "http.request", "body": read, "more_body": i < len(reads) - 1}
        for i, read in enumerate(reads)
    ]

    async def receive() -> dict:
        return messages.pop(0)

    async def pieces() -> list[bytes]:
        request = RunRequest({"state": {}, "headers": [], "query_string": b""}, receive)
        return [piece async for piece in _client_body(request, idle_seconds=30)]

    got = asyncio.run(pieces())
    whole = 20 * 256 * 1024
    assert [len(piece) for piece in got] == [
        UPLOAD_PIECE_BYTES,
        UPLOAD_PIECE_BYTES,
        whole % UPLOAD_PIECE_BYTES,
    ]
    assert b"".join(got) == b"".join(reads)


def test_client_disconnect_mid_download_closes_the_upstream_and_frees_the_slot(gateway, workspace):
    # Two transfer slots: were an abandoned download to keep its slot (or its upstream socket),
    # the third download below would be refused BUSY, and the fake would see no abort.
    _, client = gateway(max_concurrent_transfers=2)
    upload(client, f"{VOL}/dl.bin", b"z" * (64 * MiB))  # far more than all buffers between hold
    for _ in range(3):
        with client.stream(
            "POST", "/run", json={"op": "read_file", "path": f"{VOL}/dl.bin"}
        ) as response:
            assert response.status_code == 200
            next(response.iter_raw(65536))
        # The gateway sees the caller leave a moment later: wait for that, not race it (on a
        # loaded machine the next download could arrive first and be refused BUSY).
        wait_until(lambda: read_file_slots_in_use(client) == 0)
    # At least three, then exactly three: a fourth abort (a download sent twice) fails here with
    # the list, not as a condition that never came true.
    wait_until(lambda: len(workspace.aborted_downloads) >= 3)
    assert len(workspace.aborted_downloads) == 3, workspace.aborted_downloads
    assert download(client, f"{VOL}/README.txt").status_code == 200


@contextlib.contextmanager
def full_collections():
    """Counts the full garbage collections, with automatic ones off: any counted is explicit."""
    counted: list[int] = []

    def seen(phase, info):
        if phase == "start" and info["generation"] == 2:
            counted.append(1)

    gc.disable()
    gc.callbacks.append(seen)
    try:
        yield counted
    finally:
        gc.callbacks.remove(seen)
        gc.enable()


def test_a_transfer_cut_short_has_its_garbage_collected_soon(gateway, workspace):
    # An exception's traceback keeps the frames of the streaming generators in reference
    # cycles, each with the piece it last held: the gateway collects them soon after an abort
    # rather than when the collector's thresholds say; a transfer that ends does not.
    server, client = gateway()
    port = int(server.url.rsplit(":", 1)[1])
    upload(client, f"{VOL}/gc.bin", b"g" * (8 * MiB))
    with full_collections() as counted:
        upload(client, f"{VOL}/gc2.bin", b"h" * (3 * MiB), overwrite=True)
        assert download(client, f"{VOL}/gc.bin").status_code == 200
        threading.Event().wait(0.5)  # longer than the gateway waits before collecting
        assert counted == []
        with client.stream("POST", "/run", json={"op": "read_file", "path": f"{VOL}/gc.bin"}) as r:
            next(r.iter_raw(65536))
        wait_until(lambda: counted)
        counted.clear()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(
                f"POST /run?op=write_file&path={VOL}/gc3.bin HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {10 * MiB}\r\n\r\n".encode()
            )
            sock.sendall(b"y" * (3 * MiB))
            wait_until(lambda: any(r.method == "PUT" for r in workspace.requests))
        wait_until(lambda: counted)


def read_file_slots_in_use(client) -> float:
    return scrape(client)["gateway_admission_slots_in_use"].get((("op", "read_file"),), 0)


def test_text_reads(gateway):
    _, client = gateway(max_text_read_bytes=100)
    upload(client, f"{VOL}/t.txt", "naïve ✓".encode())
    assert download(client, f"{VOL}/t.txt", encoding="utf-8").json()["result"] == {
        "content": "naïve ✓",
        "size": len("naïve ✓".encode()),
    }
    upload(client, f"{VOL}/big.txt", b"a" * 101)
    assert download(client, f"{VOL}/big.txt", encoding="utf-8").status_code == 413
    upload(client, f"{VOL}/bad.txt", b"\xff\xfe")
    error = download(client, f"{VOL}/bad.txt", encoding="utf-8").json()["error"]
    assert (error["status"], error["code"]) == (422, "INVALID_UTF8")


@pytest.mark.parametrize("variant", ["rfc", "whole-range-206"])
def test_byte_ranges(gateway, workspace, variant):
    workspace.range_always_206 = variant == "whole-range-206"
    _, client = gateway()
    upload(client, f"{VOL}/r.bin", bytes(range(100)))
    window = download(client, f"{VOL}/r.bin", offset=10, length=5)
    assert window.content == bytes(range(10, 15))
    assert window.headers["content-length"] == "5"
    assert download(client, f"{VOL}/r.bin", offset=95).content == bytes(range(95, 100))
    assert download(client, f"{VOL}/r.bin", offset=0).content == bytes(range(100))
    text = run(client, "read_file", path=f"{VOL}/r.bin", offset=0, length=3, encoding="utf-8")
    assert text.json()["result"] == {"content": "\x00\x01\x02", "size": 3}
    error = download(client, f"{VOL}/r.bin", offset=100).json()["error"]
    assert (error["status"], error["code"]) == (416, "RANGE_NOT_SATISFIABLE")


def test_an_upstream_that_ignores_the_range_never_returns_the_whole_file(gateway, workspace):
    workspace.ignore_range = True
    _, client = gateway()
    upload(client, f"{VOL}/r.bin", bytes(range(100)))
    # A window at 0 is the prefix of the whole file: cut to the asked length.
    head = download(client, f"{VOL}/r.bin", offset=0, length=4)
    assert (head.status_code, head.content) == (200, bytes(range(4)))
    assert head.headers["content-length"] == "4"
    # Anywhere else the answer would be the wrong bytes: a clear error instead.
    error = download(client, f"{VOL}/r.bin", offset=10, length=5).json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_BAD_RESPONSE")


def test_missing_file_read_is_404_in_the_envelope(gateway):
    _, client = gateway()
    error = download(client, f"{VOL}/absent.txt").json()["error"]
    assert (error["status"], error["code"]) == (404, "NOT_FOUND")


def test_unicode_space_and_reserved_characters_round_trip(gateway, workspace):
    _, client = gateway()
    path = f"{VOL}/dir with space/naïve #1?&=%.txt"
    assert upload(client, path, b"odd").status_code == 200
    assert download(client, path).content == b"odd"
    assert on_disk(workspace, path).read_bytes() == b"odd"
    listing = run(client, "list_directory", path=f"{VOL}/dir with space").json()["result"]
    assert [e["name"] for e in listing["entries"]] == ["naïve #1?&=%.txt"]
    assert listing["entries"][0]["path"] == path


ACTIVE = ["html", "htm", "xhtml", "xht", "xml", "xsl", "rdf", "mht", "mhtml", "svg", "js", "mjs"]
ACTIVE += ["css", "swf", "wasm", "unknownext"]


@pytest.mark.parametrize("ext", ACTIVE)
def test_active_or_unknown_content_is_an_octet_stream_attachment(gateway, ext):
    _, client = gateway()
    upload(client, f"{VOL}/x.{ext}", b"<script>alert(1)</script>")
    response = download(client, f"{VOL}/x.{ext}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == f"attachment; filename*=UTF-8''x.{ext}"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "sandbox"


@pytest.mark.parametrize(
    ("ext", "content_type"),
    [
        ("txt", "text/plain"),
        ("csv", "text/csv"),
        ("json", "application/json"),
        ("pdf", "application/pdf"),
        ("png", "image/png"),
        ("jpg", "image/jpeg"),
    ],
)
def test_inert_types_are_served_inline_and_sandboxed(gateway, ext, content_type):
    _, client = gateway()
    upload(client, f"{VOL}/x.{ext}", b"data")
    response = download(client, f"{VOL}/x.{ext}")
    assert response.headers["content-type"].split(";")[0] == content_type
    assert "content-disposition" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "sandbox"


def test_list_directory_follows_pages_or_returns_one(gateway):
    _, client = gateway()
    for i in range(5):
        upload(client, f"{VOL}/many/f{i}.txt", b"1")
    full = run(client, "list_directory", path=f"{VOL}/many").json()["result"]
    assert [e["name"] for e in full["entries"]] == [f"f{i}.txt" for i in range(5)]
    assert full["next_page_token"] is None
    entry = full["entries"][0]
    assert entry["size"] == 1 and entry["is_directory"] is False and entry["modified"].endswith("Z")
    page = run(client, "list_directory", path=f"{VOL}/many", page_size=2).json()["result"]
    assert len(page["entries"]) == 2 and page["next_page_token"]
    rest = run(
        client,
        "list_directory",
        path=f"{VOL}/many",
        page_token=page["next_page_token"],
        page_size=10,
    ).json()["result"]
    # One page only: the server may return fewer than asked (the fake pages by 2).
    assert [e["name"] for e in rest["entries"]] == ["f2.txt", "f3.txt"]
    assert rest["next_page_token"]


def test_directories_and_file_info(gateway):
    _, client = gateway()
    assert run(client, "create_directory", path=f"{VOL}/a/b/c").status_code == 200
    assert run(client, "create_directory", path=f"{VOL}/a/b/c").status_code == 200  # idempotent
    info = run(client, "file_info", path=f"{VOL}/a/b").json()["result"]
    assert info["exists"] and info["is_directory"]
    upload(client, f"{VOL}/a/data.csv", b"x,y\n")
    info = run(client, "file_info", path=f"{VOL}/a/data.csv").json()["result"]
    assert (info["exists"], info["size"], info["content_type"]) == (True, 4, "text/csv")
    assert run(client, "file_info", path=f"{VOL}/nope").json()["result"] == {
        "exists": False,
        "path": f"{VOL}/nope",
        "is_directory": False,
        "size": None,
        "modified": None,
        "content_type": None,
    }


# Sizes no caller can hold exactly (JavaScript's numbers stop at 2^53 - 1), or no size at all.
ABSURD_LENGTHS = [str(10**23), str(2**53), "-5", "12abc"]


@pytest.mark.parametrize("length", ABSURD_LENGTHS)
@pytest.mark.parametrize("how", ["bytes", "text"])
def test_a_download_of_an_absurd_length_is_a_bad_response(gateway, workspace, length, how):
    _, client = gateway()
    upload(client, f"{VOL}/n.bin", b"abc")
    headers = {"Content-Length": length}
    fault = Fault(path="/fs/files/Volumes", method="GET", body=b"abc", headers=headers)
    workspace.inject(Fault(**{**vars(fault), "content_type": "application/octet-stream"}))
    params = {"encoding": "utf-8"} if how == "text" else {}
    error = download(client, f"{VOL}/n.bin", **params).json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_BAD_RESPONSE")


@pytest.mark.parametrize("coding", ["gzip", "br", "x-proxy-own"])
@pytest.mark.parametrize("how", ["bytes", "text"])
def test_a_download_in_a_content_coding_is_a_bad_response(gateway, workspace, coding, how):
    # The gateway asks for the stored bytes (Accept-Encoding: identity): their length and a
    # range's offsets are relayed as Databricks gives them, which a coded body's are not.
    # (Before: the gzip body was decoded and sent short of the length relayed, a cut stream.)
    _, client = gateway()
    upload(client, f"{VOL}/z.txt", b"hello")
    coded = gzip.compress(b"hello")
    workspace.inject(
        Fault(
            path="/fs/files/Volumes",
            method="GET",
            body=coded,
            content_type="application/octet-stream",
            headers={"Content-Encoding": coding},
        )
    )
    params = {"encoding": "utf-8"} if how == "text" else {}
    error = download(client, f"{VOL}/z.txt", **params).json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_BAD_RESPONSE")
    asked = [r for r in workspace.requests if r.path.endswith("/z.txt") and r.method == "GET"]
    assert asked[-1].accept_encoding == "identity"


@pytest.mark.parametrize("length", ABSURD_LENGTHS[:2])
def test_file_info_of_an_absurd_size_is_a_bad_response(gateway, workspace, length):
    _, client = gateway()
    fault = Fault(path="/fs/files", method="HEAD", body=b"", headers={"Content-Length": length})
    workspace.inject(Fault(**{**vars(fault), "content_type": "application/octet-stream"}))
    error = run(client, "file_info", path=f"{VOL}/README.txt").json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_BAD_RESPONSE")


@pytest.mark.parametrize(
    ("where", "name"),
    [
        ("/fs/files/", "README.txt"),
        ("/fs/files/", "nothing-here"),
        ("/fs/directories/", "nothing-here"),  # asked once no file is there
    ],
)
def test_file_info_answered_by_a_login_page_is_a_bad_response(gateway, workspace, where, name):
    # A HEAD has no body to tell a login page by; its Content-Type does. It said `exists: true`
    # (for a file, or for a directory) of a path that has nothing there.
    _, client = gateway()
    workspace.inject(
        Fault(path=where, method="HEAD", status=200, body=b"", content_type="text/html", times=None)
    )
    error = run(client, "file_info", path=f"{VOL}/{name}").json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_BAD_RESPONSE")


def test_file_info_does_not_swallow_other_errors(gateway, workspace):
    _, client = gateway()
    workspace.inject(Fault(path="/fs/files", method="HEAD", status=503, times=None))
    response = run(client, "file_info", path=f"{VOL}/README.txt")
    assert response.status_code == 503


def test_delete_file_and_directories(gateway, workspace):
    _, client = gateway()
    upload(client, f"{VOL}/d/x/1.txt", b"1")
    upload(client, f"{VOL}/d/2.txt", b"2")
    assert run(client, "delete_file", path=f"{VOL}/d/2.txt").json()["result"]["kind"] == "file"
    error = run(client, "delete_file", path=f"{VOL}/d").json()["error"]
    assert (error["status"], error["code"]) == (409, "DIRECTORY_NOT_EMPTY")
    assert on_disk(workspace, f"{VOL}/d/x/1.txt").exists()
    result = run(client, "delete_file", path=f"{VOL}/d", recursive=True).json()["result"]
    assert result == {"path": f"{VOL}/d", "kind": "directory", "removed": 3}
    assert not on_disk(workspace, f"{VOL}/d").exists()
    run(client, "create_directory", path=f"{VOL}/empty")
    assert run(client, "delete_file", path=f"{VOL}/empty").json()["result"]["kind"] == "directory"
    assert run(client, "delete_file", path=f"{VOL}/ghost").status_code == 404


def test_a_recursive_delete_deletes_nothing_a_listing_names_outside_its_tree(gateway, workspace):
    _, client = gateway()
    for path in (f"{VOL}/d/1.txt", f"{VOL}/keep.txt"):
        assert upload(client, path, b"1").status_code == 200
    # The listing of d names a file beside d, not in it.
    workspace.inject(
        Fault(
            path=f"/api/2.0/fs/directories{VOL}/d",
            body=orjson.dumps({"contents": [{"path": f"{VOL}/keep.txt", "name": "keep.txt"}]}),
            content_type="application/json",
        )
    )
    response = run(client, "delete_file", path=f"{VOL}/d", recursive=True)
    assert response.json()["error"]["code"] == "DATABRICKS_BAD_RESPONSE"
    info = run(client, "file_info", path=f"{VOL}/keep.txt").json()["result"]
    assert info["exists"] is True
    assert on_disk(workspace, f"{VOL}/keep.txt").exists()


def test_per_user_visibility_is_passed_on(gateway):
    _, client = gateway(auth_mode="user")
    bob = {"X-Databricks-Token": DEMO.bob_token}
    alice = {"X-Databricks-Token": DEMO.alice_token}
    target = "/Volumes/finance/reports/exports/r.txt"
    denied = upload(client, target, b"x", headers=bob)
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "DATABRICKS_PERMISSION_DENIED"
    assert upload(client, target, b"x", headers=alice).status_code == 200
    assert download(client, target, **{}).status_code == 401  # no token in user mode
    assert (
        client.post("/run", json={"op": "read_file", "path": target}, headers=bob).status_code
        == 403
    )


def test_default_volume_resolves_relative_paths(gateway, workspace):
    _, client = gateway(default_volume=VOL, allowed_roots=[VOL])
    assert (
        run(client, "write_file", path="rel/x.txt", content="r").json()["result"]["path"]
        == f"{VOL}/rel/x.txt"
    )
    assert on_disk(workspace, f"{VOL}/rel/x.txt").read_bytes() == b"r"


@pytest.mark.parametrize("token", ["not-a-token", "é", "²"])
def test_a_page_token_the_api_refuses_is_its_400_passed_on(gateway, token):
    _, client = gateway()
    upload(client, f"{VOL}/paged/a.txt", b"1")
    response = run(client, "list_directory", path=f"{VOL}/paged", page_token=token)
    assert response.status_code == 400
    assert response.json()["error"]["databricks_error_code"] == "INVALID_PARAMETER_VALUE"


def test_a_file_under_a_path_that_is_a_file_is_a_409_and_the_file_stays(gateway, workspace):
    _, client = gateway()
    assert upload(client, f"{VOL}/plain", b"kept").status_code == 200
    for body in (b"x", b""):  # streamed, and the JSON form below
        response = upload(client, f"{VOL}/plain/sub/x.bin", body)
        assert response.status_code == 409, response.text
    response = run(client, "write_file", path=f"{VOL}/plain/x.txt", content="x")
    assert response.json()["error"]["code"] == "ALREADY_EXISTS"
    assert download(client, f"{VOL}/plain").content == b"kept"
