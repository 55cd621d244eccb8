"""The lean upstream path (gateway/upstream.py): it answers exactly as the SDK path does, retries
as the SDK does, sends each identity's own credentials, and never mixes identities up."""

from __future__ import annotations

import base64
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import orjson
import pytest

from gateway.testing import DEMO, FakeWorkspace, Fault
from tests.support import run

ALICE = {"X-Databricks-Token": DEMO.alice_token}
BOB = {"X-Databricks-Token": DEMO.bob_token}
STRANGER = {"X-Databricks-Token": "dapi-nobody"}
OAUTH = {"databricks_token": None, "client_id": DEMO.client_id, "client_secret": DEMO.client_secret}

# (op, params, caller headers): every ported op, each identity kind, answers and refusals.
CALLS: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("me", {}, {}),
    ("me", {}, ALICE),
    ("me", {}, STRANGER),  # 403: an invalid token
    ("list_catalogs", {}, {}),  # several pages: the fake serves 2 items a page
    ("list_catalogs", {}, ALICE),  # alice also sees `finance`
    ("list_schemas", {"catalog": "main"}, {}),
    ("list_schemas", {"catalog": "finance"}, {}),  # 403
    ("list_schemas", {"catalog": "finance"}, ALICE),
    ("list_schemas", {"catalog": "nope"}, {}),  # 404
    ("list_volumes", {"catalog": "main", "schema": "app"}, {}),
    ("list_volumes", {"catalog": "main", "schema": "nope"}, {}),  # 404
]

# (fault, op): upstream failures, each injected once per path.
FAULTS: list[tuple[Fault, str]] = [
    (Fault(path="/unity-catalog/catalogs", status=429, retry_after=0), "list_catalogs"),
    (Fault(path="/scim/v2/Me", status=503, retry_after=0), "me"),
    (Fault(path="/scim/v2/Me", status=500), "me"),
    (Fault(path="/unity-catalog/schemas", status=429, retry_after=1, times=None), "list_schemas"),
    (Fault(path="/scim/v2/Me", body=b"<html>login</html>"), "me"),  # 200, not the API
    (Fault(path="/unity-catalog/catalogs", drop=True), "list_catalogs"),  # then a retry
    (Fault(path="/scim/v2/Me", delay=3), "me"),  # past the 1 s read timeout once, then a retry
    (Fault(path="/scim/v2/Me", delay=3, times=None), "me"),  # every read times out: 504
]


def answer(response: httpx.Response) -> tuple[int, Any, str | None]:
    body = response.json()
    if "error" in body:
        body["error"].pop("request_id")
    return response.status_code, body, response.headers.get("retry-after")


def both_paths(gateway: Any, **settings: Any) -> tuple[httpx.Client, httpx.Client]:
    _, lean = gateway(auth_mode="auto", lean_upstream=True, **settings)
    _, sdk = gateway(auth_mode="auto", lean_upstream=False, **settings)
    return lean, sdk


@pytest.mark.parametrize(("op", "params", "headers"), CALLS)
def test_lean_and_sdk_paths_answer_alike(gateway, op, params, headers):
    lean, sdk = both_paths(gateway)
    expected = answer(run(sdk, op, headers, **params))
    assert answer(run(lean, op, headers, **params)) == expected


def test_an_answer_over_the_chunk_limit_is_a_bad_response(gateway, workspace):
    # A valid JSON object of 2 MiB where GATEWAY_MAX_CHUNK_BYTES is 1 MiB: refused by its
    # Content-Length before it is read, never parsed into an answer.
    padded = b'{"catalogs": [], "padding": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    fault = Fault(path="/unity-catalog/catalogs", body=padded, content_type="application/json")
    workspace.inject(fault)
    _, client = gateway(max_chunk_bytes=1024 * 1024)
    error = run(client, "list_catalogs").json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_BAD_RESPONSE")
    assert run(client, "list_catalogs").status_code == 200  # the fault was once; pages are small


# (op, path, params, page): a listing page of a shape Databricks never sends. The SDK's
# dataclasses keep any type they are given, so these reached the ops' result models (a 500).
ODD_PAGES = [
    ("list_catalogs", "/unity-catalog/catalogs", {}, {"catalogs": [{"name": 5}]}),
    (
        "list_schemas",
        "/unity-catalog/schemas",
        {"catalog": "main"},
        {"schemas": [{"name": "s", "owner": 5}]},
    ),
    (
        "list_volumes",
        "/unity-catalog/volumes",
        {"catalog": "main", "schema": "app"},
        {"volumes": [{"name": "v", "created_at": "yesterday"}]},
    ),
    ("list_catalogs", "/unity-catalog/catalogs", {}, {"catalogs": None}),
    ("list_catalogs", "/unity-catalog/catalogs", {}, {"catalogs": [1, 2]}),
    ("me", "/scim/v2/Me", {}, {"userName": "a", "emails": [None]}),
    ("me", "/scim/v2/Me", {}, {"userName": "a", "groups": "admins"}),
    (
        "list_volumes",
        "/unity-catalog/volumes",
        {"catalog": "main", "schema": "app"},
        {"volumes": None},
    ),
]


@pytest.mark.parametrize("lean", [True, False])
@pytest.mark.parametrize(("op", "path", "params", "page"), ODD_PAGES)
def test_a_listing_page_of_another_shape_is_a_bad_response(
    gateway, workspace, lean, op, path, params, page
):
    fault = Fault(path=path, body=orjson.dumps(page), content_type="application/json", times=None)
    workspace.inject(fault)
    _, client = gateway(lean_upstream=lean)
    error = run(client, op, **params).json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_BAD_RESPONSE")


@pytest.mark.parametrize("lean", [True, False])
def test_unity_catalog_objects_without_a_name_are_listed_with_an_empty_one(
    gateway, workspace, lean
):
    page = {"volumes": [{"comment": "c", "catalog_name": "main", "schema_name": "app"}]}
    page["volumes"].append({"name": None, "owner": "o", "an_unknown_field": [1], "model": 2})
    workspace.inject(
        Fault(
            path="/unity-catalog/volumes", body=orjson.dumps(page), content_type="application/json"
        )
    )
    _, client = gateway(lean_upstream=lean)
    listed = run(client, "list_volumes", catalog="main", schema="app").json()["result"]
    assert [(v["name"], v["comment"], v["owner"], v["path"]) for v in listed] == [
        ("", "c", None, None),
        ("", None, "o", None),
    ]
    assert "an_unknown_field" not in listed[1]
    assert "model" not in listed[1]


def test_the_lean_path_passes_on_an_enum_value_newer_than_the_sdk(gateway, workspace):
    page = {"catalogs": [{"name": "c", "catalog_type": "SOME_NEW_TYPE"}]}
    body = orjson.dumps(page)
    workspace.inject(
        Fault(path="/unity-catalog/catalogs", body=body, content_type="application/json")
    )
    _, client = gateway(lean_upstream=True)
    assert run(client, "list_catalogs").json()["result"][0]["catalog_type"] == "SOME_NEW_TYPE"


def test_a_next_page_token_that_is_not_a_string_is_a_bad_response(gateway, workspace):
    page = orjson.dumps({"catalogs": [], "next_page_token": {"a": 1}})
    workspace.inject(
        Fault(path="/unity-catalog/catalogs", body=page, content_type="application/json")
    )
    _, client = gateway()
    error = run(client, "list_catalogs").json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_BAD_RESPONSE")


# Statements: the polls and chunk lookups are lean GETs too (several chunks, a SQL error, a
# statement another identity cannot see, an id that does not exist).
QUERIES: list[tuple[str, dict[str, Any], int]] = [
    (
        "run_query",
        {"statement": "SELECT range AS n FROM range(25)", "disposition": "EXTERNAL_LINKS"},
        200,
    ),
    ("run_query", {"statement": "SELECT n FROM no_such_table"}, 400),
    ("query_status", {"statement_id": "01ef0000-0000-0000-0000-000000000000"}, 404),
]


def without_statement_id(response: httpx.Response) -> tuple[int, Any, str | None]:
    status, body, retry_after = answer(response)
    body.get("result", {}).pop("statement_id", None)
    body.get("error", {}).get("details", {}).pop("statement_id", None)
    return status, body, retry_after


@pytest.mark.parametrize(("op", "params", "status"), QUERIES)
def test_statements_answer_alike_on_both_paths(gateway, workspace, op, params, status):
    workspace.warehouse.chunk_rows = 10
    lean, sdk = both_paths(gateway)
    expected = without_statement_id(run(sdk, op, **params))
    assert expected[0] == status
    assert without_statement_id(run(lean, op, **params)) == expected


def test_a_submitted_statement_polls_and_fetches_alike_on_both_paths(gateway, workspace):
    workspace.warehouse.chunk_rows = 10
    workspace.warehouse.pending_seconds = 0.2  # a few polls before it succeeds
    answers = []
    for client in both_paths(gateway):
        submitted = run(client, "submit_query", statement="SELECT range AS n FROM range(25)")
        statement_id = submitted.json()["result"]["statement_id"]
        while run(client, "query_status", statement_id=statement_id).json()["result"]["state"] in (
            "PENDING",
            "RUNNING",
        ):
            pass
        pages = [
            run(client, "fetch_result", statement_id=statement_id, chunk_index=i) for i in (0, 2)
        ]
        answers.append([without_statement_id(page) for page in pages])
    assert answers[1] == answers[0]
    assert answers[0][1][1]["result"]["rows"] == [[20], [21], [22], [23], [24]]


@pytest.mark.parametrize(("fault", "op"), FAULTS, ids=lambda v: getattr(v, "path", v))
def test_lean_and_sdk_paths_fail_and_retry_alike(gateway, workspace, fault, op):
    # A fault that never ends spends the budget (keep it short); a passing one must never
    # exhaust it, even when a loaded machine stretches the SDK's ~1-2 s backoff. Reads time out
    # after 1 s only where the fault is a slow answer: elsewhere a loaded machine's slow read
    # would be a second fault (a 429 turned into a timeout on one path, once in a floors run).
    budget = 2 if fault.times is None else 8
    read_timeout = 1 if fault.delay else 10
    lean, sdk = both_paths(
        gateway, sdk_retry_timeout_seconds=budget, sdk_http_timeout_seconds=read_timeout
    )
    params = {"catalog": "main"} if op == "list_schemas" else {}
    answers = []
    for client in (sdk, lean):
        workspace.clear_faults()
        workspace.inject(Fault(**vars(fault)))  # a fresh copy: `times` counts down
        answers.append(answer(run(client, op, **params)))
    workspace.clear_faults()
    assert answers[1] == answers[0]


# Databricks' API never redirects; a login page in front of it does. A Private Link workspace
# called from outside its network redirects every call to its login page, which the SDK
# follows and reads as PrivateLinkValidationError (403). Neither path may take a redirect for
# an empty answer.
LOGIN_PAGE = Fault(path="/login.html", body=b"<html>Sign in</html>", times=None)
REDIRECTS = [
    ("/login.html?error=private-link-validation-error", 403, "DATABRICKS_PERMISSION_DENIED"),
    ("/login.html?next=%2Fapi", 502, "DATABRICKS_BAD_RESPONSE"),
]


@pytest.mark.parametrize("op", ["me", "list_catalogs"])
@pytest.mark.parametrize(("location", "status", "code"), REDIRECTS)
def test_a_redirect_to_a_login_page_fails_alike_on_both_paths(
    gateway, workspace, op, location, status, code
):
    lean, sdk = both_paths(gateway)
    answers = []
    for client in (sdk, lean):
        workspace.clear_faults()
        workspace.inject(Fault(path="/api/", location=location, times=None))
        workspace.inject(Fault(**vars(LOGIN_PAGE)))
        answers.append(answer(run(client, op)))
    workspace.clear_faults()
    assert answers[1] == answers[0]
    error = answers[0][1]["error"]
    assert (error["status"], error["code"]) == (status, code)


def test_oauth_m2m_service_identity_answers_alike(gateway):
    lean, sdk = both_paths(gateway, **OAUTH)
    for op in ("me", "list_catalogs"):
        assert answer(run(lean, op)) == answer(run(sdk, op))


def test_a_throttled_call_is_retried_after_retry_after(gateway, workspace):
    _, client = gateway(lean_upstream=True)
    workspace.inject(Fault(path="/unity-catalog/catalogs", status=429, retry_after=0, times=2))
    before = len(workspace.paths_seen("/api/2.1/unity-catalog/catalogs"))
    assert run(client, "list_catalogs").status_code == 200
    # two refusals, then the first page and the following ones (2 catalogs a page)
    seen = workspace.paths_seen("/api/2.1/unity-catalog/catalogs")[before:]
    assert len(seen) == 2 + service_pages(workspace)


@pytest.mark.parametrize("lean", [True, False])
def test_a_retry_after_below_zero_is_retried_at_once(gateway, workspace, lean):
    # Retry-After -1 (a broken proxy's): no wait, not a sleep(-1) ValueError (a 500).
    _, client = gateway(lean_upstream=lean)
    workspace.inject(Fault(path="/scim/v2/Me", status=503, retry_after=-1, times=1))
    before = len(workspace.paths_seen("/api/2.0/preview/scim/v2/Me"))
    assert run(client, "me").status_code == 200
    assert len(workspace.paths_seen("/api/2.0/preview/scim/v2/Me")) - before == 2


def test_a_statement_refused_with_a_retry_after_below_zero_is_sent_again(gateway, workspace):
    _, client = gateway()
    workspace.inject(
        Fault(path="/api/2.0/sql/statements", method="POST", status=503, retry_after=-1)
    )
    response = run(client, "run_query", statement="SELECT 1 AS a")
    assert response.json()["result"]["rows"] == [[1]]


def test_throttling_past_the_budget_is_rate_limited_with_retry_after(gateway, workspace):
    _, client = gateway(lean_upstream=True, sdk_retry_timeout_seconds=1)
    workspace.inject(Fault(path="/scim/v2/Me", status=429, retry_after=5, times=None))
    response = run(client, "me")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "RATE_LIMITED"
    assert response.headers["retry-after"] == "5"
    # Retry-After (5 s) is past the 1 s budget: one try, no sleep into a certain failure.
    assert len(workspace.paths_seen("/api/2.0/preview/scim/v2/Me")) == 1


def test_an_unreachable_host_is_unreachable(gateway, workspace):
    _, client = gateway(lean_upstream=True, sdk_retry_timeout_seconds=1)
    workspace.inject(Fault(path="/scim/v2/Me", drop=True, times=None))
    response = run(client, "me")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "DATABRICKS_UNREACHABLE"


def test_each_identity_sends_its_own_credentials(gateway, workspace):
    _, client = gateway(lean_upstream=True, auth_mode="auto")
    for headers, token in ((ALICE, DEMO.alice_token), ({}, DEMO.service_token)):
        start = len(workspace.requests)
        assert run(client, "list_schemas", headers, catalog="main").status_code == 200
        sent = {r.authorization for r in workspace.requests[start:] if r.path.startswith("/api/")}
        assert sent == {f"Bearer {token}"}


def test_oauth_m2m_token_is_fetched_once_and_sent(gateway, workspace):
    _, client = gateway(lean_upstream=True, **OAUTH)
    for _ in range(5):
        assert run(client, "me").json()["result"]["user_name"] == DEMO.client_id
    token_fetches = [r for r in workspace.requests if r.path == "/oidc/v1/token"]
    assert len(token_fetches) == 1
    me_calls = [r for r in workspace.requests if r.path.endswith("/scim/v2/Me")]
    assert {r.authorization for r in me_calls} == {f"Bearer {token_of(workspace, DEMO.client_id)}"}


def test_identities_never_mix_under_concurrency(gateway):
    _, client = gateway(lean_upstream=True, auth_mode="auto")
    callers = [(ALICE, "alice@example.com"), (BOB, "bob@example.com")]
    callers.append(({}, "gateway-service@example.com"))
    plan = [callers[i % 3] for i in range(500)]

    def call(caller: tuple[dict[str, str], str]) -> bool:
        response = run(client, "me", caller[0])
        return response.json()["result"]["user_name"] == caller[1]

    with ThreadPoolExecutor(max_workers=24) as pool:
        mismatches = [ok for ok in pool.map(call, plan) if not ok]
    assert mismatches == []


def service_pages(workspace: FakeWorkspace) -> int:
    visible = [c for c in workspace.catalogs if workspace.readers.get(c) is None]
    return -(-len(visible) // workspace.page_size)


def token_of(workspace: FakeWorkspace, name: str) -> str:
    return next(
        t for t, u in workspace.users.items() if u.user_name == name and t.startswith("m2m-")
    )


class ForwardProxy(BaseHTTPRequestHandler):
    """A forward HTTP proxy: each request (an absolute URL) is recorded and sent on directly."""

    server: ProxyServer

    def forward(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Proxy-Authorization")))
        hop_by_hop = {"proxy-authorization", "proxy-connection", "connection", "host"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in hop_by_hop}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        # Only http:// URLs reach it: the test's own clients and the gateway, to the fake.
        request = urllib.request.Request(self.path, body, headers, method=self.command)  # noqa: S310
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with direct.open(request, timeout=30) as answer:
                status, kind, payload = answer.status, answer.headers["Content-Type"], answer.read()
        except urllib.error.HTTPError as refused:
            status, kind, payload = refused.code, refused.headers["Content-Type"], refused.read()
        self.send_response(status)
        self.send_header("Content-Type", kind or "application/octet-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = forward

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), ForwardProxy)
        self.seen: list[tuple[str, str | None]] = []


def test_raw_calls_go_through_the_environments_proxy(gateway, workspace, monkeypatch):
    # As the SDK's requests does: HTTP(S)_PROXY from the environment, credentials included,
    # for the clients that do not read it themselves: the lean path (aiohttp), raw downloads
    # and the readiness probe (urllib3), uploads and external links (httpx over aiohttp).
    proxy = ProxyServer()
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        for name in ("http_proxy", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://user:p%40ss@127.0.0.1:{proxy.server_port}")
        _, client = gateway(lean_upstream=True)
        workspace.warehouse.chunk_rows = 2
        answers = [
            run(client, "me"),
            run(client, "read_file", path="/Volumes/main/app/files/README.txt"),
            client.get("/ready"),
            client.post(
                "/run",
                params={"op": "write_file", "path": "/Volumes/main/app/files/proxied.txt"},
                content=b"through the proxy",
                headers={"content-type": "application/octet-stream"},
            ),
            run(client, "run_query", statement="SELECT 1 AS n", disposition="EXTERNAL_LINKS"),
        ]
    finally:
        proxy.shutdown()
    assert [a.status_code for a in answers] == [200] * 5
    credentials = f"Basic {base64.b64encode(b'user:p@ss').decode()}"
    for part in ("/preview/scim/v2/Me", "/fs/files/Volumes/main/app/files/", "/external/"):
        through = [auth for path, auth in proxy.seen if part in path]
        assert through and set(through) == {credentials}, part
    assert {path.split("/fs/files")[-1] for path, _ in proxy.seen if "/fs/files" in path} >= {
        "/Volumes/main/app/files/README.txt",
        "/Volumes/main/app/files/proxied.txt?overwrite=false",
    }
