"""The one error boundary: every SDK error class is mapped; every fault gets its status."""

from __future__ import annotations

import inspect
import logging
import re
from pathlib import Path

import aiohttp
import httpx
import orjson
import pytest
import requests
import urllib3
from databricks.sdk import errors as sdk_errors
from databricks.sdk.errors import platform, private_link

from gateway.errors import CODES, mapped_class_for, markdown_table, translate
from gateway.testing import Fault
from tests.support import run

VOL = "/Volumes/main/app/files"
LOGIN_PAGE = b"<html><body>Please sign in</body></html>"


def all_sdk_error_classes() -> list[type]:
    found = {
        cls
        for module in (platform, private_link, sdk_errors)
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, sdk_errors.DatabricksError) and cls is not sdk_errors.DatabricksError
    }
    return sorted(found, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", all_sdk_error_classes(), ids=lambda c: c.__name__)
def test_every_sdk_error_class_is_mapped(cls):
    assert mapped_class_for(cls) is not None, f"{cls.__name__} has no row in errors._SDK_TABLE"
    mapped = translate(cls("message", error_code="SOME_CODE"))
    assert mapped is not None and 400 <= mapped.status < 600


def test_status_mapping_matches_the_reference():
    cases = {
        sdk_errors.BadRequest: 400,
        sdk_errors.Unauthenticated: 401,
        sdk_errors.PermissionDenied: 403,
        sdk_errors.NotFound: 404,
        sdk_errors.ResourceConflict: 409,
        sdk_errors.TooManyRequests: 429,
        sdk_errors.InternalError: 502,
        sdk_errors.NotImplemented: 501,
        sdk_errors.TemporarilyUnavailable: 503,
        sdk_errors.DeadlineExceeded: 504,
        sdk_errors.DatabricksError: 502,
    }
    for cls, status in cases.items():
        assert translate(cls("m")).status == status, cls


def test_sdk_timeout_maps_by_its_cause():
    def timeout_from(cause: BaseException) -> TimeoutError:
        try:
            raise TimeoutError("Timed out after 0:00:30") from cause
        except TimeoutError as exc:
            return exc

    assert translate(timeout_from(requests.ConnectionError())).code == "DATABRICKS_UNREACHABLE"
    assert translate(timeout_from(sdk_errors.TooManyRequests("x", retry_after_secs=7))).headers == {
        "Retry-After": "7"
    }
    assert translate(timeout_from(ValueError())).status == 504
    # the lean path's last failures (aiohttp)
    refused = aiohttp.ClientConnectorError(None, OSError(111, "refused"))
    assert translate(timeout_from(refused)).code == "DATABRICKS_UNREACHABLE"
    assert translate(timeout_from(aiohttp.SocketTimeoutError())).code == "DATABRICKS_TIMEOUT"


def test_auth_error_messages_drop_the_sdk_config_summary():
    exc = sdk_errors.PermissionDenied("No access. Config: host=https://h, token=***, auth_type=pat")
    assert translate(exc).message == "No access"


def test_unrelated_exceptions_are_not_mapped():
    assert translate(KeyError("x")) is None
    assert translate(ValueError("x")) is None


def _subclasses(root: type) -> list[type]:
    found, pending = set(), [root]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub not in found and not issubclass(sub, Warning):
                found.add(sub)
                pending.append(sub)
    return sorted(found | {root}, key=lambda c: f"{c.__module__}.{c.__qualname__}")


TRANSPORT_CLASSES = [
    cls
    for root in (
        requests.RequestException,
        urllib3.exceptions.HTTPError,
        httpx.HTTPError,
        aiohttp.ClientError,
    )
    for cls in _subclasses(root)
    if cls.__module__.split(".")[0] in ("requests", "urllib3", "httpx", "aiohttp")
]


@pytest.mark.parametrize("cls", TRANSPORT_CLASSES, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_every_transport_error_class_is_mapped(cls):
    exc = cls.__new__(cls)  # mapping is by class: no constructor arguments needed
    if cls is httpx.HTTPStatusError:
        exc = cls("x", request=httpx.Request("GET", "https://h"), response=httpx.Response(503))
    mapped = translate(exc)
    assert mapped is not None, f"{cls.__name__} is unmapped"
    assert mapped.status in (401, 429) or mapped.status >= 500
    assert mapped.code in CODES


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        # NewConnectionError subclasses ConnectTimeoutError: a refusal is not a timeout.
        (urllib3.exceptions.NewConnectionError(None, "refused"), "DATABRICKS_UNREACHABLE"),
        (urllib3.exceptions.NameResolutionError("h", None, OSError()), "DATABRICKS_UNREACHABLE"),
        (urllib3.exceptions.ReadTimeoutError(None, "/", "slow"), "DATABRICKS_TIMEOUT"),
        (
            urllib3.exceptions.MaxRetryError(
                None, "/", urllib3.exceptions.NewConnectionError(None, "x")
            ),
            "DATABRICKS_UNREACHABLE",
        ),
        (urllib3.exceptions.IncompleteRead(5, 10), "DATABRICKS_BAD_RESPONSE"),
        (requests.JSONDecodeError("Expecting value", "<html>", 0), "DATABRICKS_BAD_RESPONSE"),
        (requests.ConnectTimeout(), "DATABRICKS_UNREACHABLE"),
        (requests.ReadTimeout(), "DATABRICKS_TIMEOUT"),
        (httpx.ConnectError("refused"), "DATABRICKS_UNREACHABLE"),
        (httpx.ReadTimeout("slow"), "DATABRICKS_TIMEOUT"),
        (httpx.RemoteProtocolError("garbage"), "DATABRICKS_BAD_RESPONSE"),
        # aiohttp's timeouts are connection errors and TimeoutErrors at once
        (aiohttp.ConnectionTimeoutError(), "DATABRICKS_UNREACHABLE"),
        (aiohttp.SocketTimeoutError(), "DATABRICKS_TIMEOUT"),
        (aiohttp.ServerDisconnectedError(), "DATABRICKS_UNREACHABLE"),
        (aiohttp.ClientPayloadError("cut"), "DATABRICKS_BAD_RESPONSE"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v,
)
def test_transport_errors_map_to_the_right_code(exc, code):
    assert translate(exc).code == code


def test_external_link_status_errors_map_through_the_sdk_table():
    request = httpx.Request("GET", "https://links")
    for status, code in [(403, "DATABRICKS_PERMISSION_DENIED"), (500, "DATABRICKS_ERROR")]:
        exc = httpx.HTTPStatusError("x", request=request, response=httpx.Response(status))
        assert translate(exc).code == code


def test_the_readme_error_table_is_the_code_table():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert markdown_table() in readme, "regenerate it: python -m gateway.errors"


def test_every_error_code_raised_in_the_code_is_in_the_table():
    source = Path(__file__).parent.parent / "gateway"
    pattern = re.compile(
        r'(?:GatewayError\(\s*(\d{3}),\s*|bad_request\(\s*|error\(\s*)"([A-Z_0-9]+)"'
    )
    used = [m.groups() for f in source.rglob("*.py") for m in pattern.finditer(f.read_text())]
    assert len(used) > 30
    for status, code in used:
        assert code in CODES, f"{code} is not in errors.CODES"
        if status:
            assert CODES[code].status == int(status), code


# --- through the real SDK and the fake ----------------------------------------------------


def test_not_found_carries_the_databricks_code(gateway):
    _, client = gateway()
    error = run(client, "list_schemas", catalog="nope").json()["error"]
    assert (error["status"], error["code"]) == (404, "NOT_FOUND")
    assert error["databricks_error_code"] == "CATALOG_DOES_NOT_EXIST"
    assert error["message"] == "Catalog 'nope' does not exist."


@pytest.mark.parametrize(
    ("status", "expected", "code"),
    [
        (429, 429, "RATE_LIMITED"),
        (503, 503, "DATABRICKS_UNAVAILABLE"),
        (500, 502, "DATABRICKS_ERROR"),
        (502, 502, "DATABRICKS_ERROR"),
        (504, 504, "DATABRICKS_TIMEOUT"),
        (501, 501, "NOT_IMPLEMENTED"),
    ],
)
def test_persistent_faults_map_within_the_retry_budget(gateway, workspace, status, expected, code):
    # The request deadline (15 s) outlives the SDK's retry budget: the mapped code, not
    # GATEWAY_TIMEOUT, shows the SDK gave up at its budget, never at its 300 s default.
    _, client = gateway(sdk_retry_timeout_seconds=1, request_timeout_seconds=15)
    workspace.inject(Fault(path="/catalogs", status=status, times=None))
    response = run(client, "list_catalogs")
    assert response.status_code == expected
    assert response.json()["error"]["code"] == code
    if status == 429:
        assert response.headers["retry-after"] == "1"
    if status >= 500:
        assert "Internal error" not in response.text  # 5xx detail stays in our log


@pytest.mark.parametrize(
    "fault",
    [
        Fault(path="/catalogs", status=429, times=1),
        Fault(path="/catalogs", status=503, times=1),
        Fault(path="/catalogs", drop=True, times=1),
    ],
    ids=["429", "503", "drop"],
)
def test_transient_faults_are_retried_by_the_sdk(gateway, workspace, fault):
    _, client = gateway(sdk_retry_timeout_seconds=15)  # the SDK sleeps ~1-2 s between tries
    workspace.inject(fault)
    assert run(client, "list_catalogs").status_code == 200
    assert not workspace.faults  # the fault was served: the 200 came from a retry


def test_dropped_connections_until_the_budget_is_spent_are_503(gateway, workspace):
    _, client = gateway(sdk_retry_timeout_seconds=1)
    workspace.inject(Fault(path="/Me", drop=True, times=None))
    error = run(client, "me").json()["error"]
    assert (error["status"], error["code"]) == (503, "DATABRICKS_UNREACHABLE")


def test_slow_databricks_past_the_deadline_is_504_and_the_gateway_stays_healthy(gateway, workspace):
    _, client = gateway(request_timeout_seconds=1)
    workspace.inject(Fault(path="/Me", delay=2.5, times=1))
    error = run(client, "me").json()["error"]
    assert (error["status"], error["code"]) == (504, "GATEWAY_TIMEOUT")
    assert client.get("/health").status_code == 200
    assert run(client, "list_catalogs").status_code == 200


def test_unreachable_host_is_503_within_the_deadline(gateway):
    # Each 1 s budget can overrun by one backoff sleep (the SDK checks its deadline before
    # sleeping), so probe + call take up to ~4 s; the deadline leaves room for both.
    _, client = gateway(
        databricks_host="http://127.0.0.1:9",
        sdk_retry_timeout_seconds=1,
        request_timeout_seconds=15,
    )
    error = run(client, "me").json()["error"]
    # The construction-time metadata probe and the call each get a bounded budget, so the
    # caller learns the truth (unreachable) rather than a generic deadline error.
    assert (error["status"], error["code"]) == (503, "DATABRICKS_UNREACHABLE")


def test_client_calls_keep_the_full_retry_budget(gateway, workspace, monkeypatch):
    from gateway import auth

    # The probe's cap must not shorten the calls' budget. Two dropped connections cost the SDK
    # two backoff sleeps (1 s, then 2 s, plus jitter): past a 1 s cap, within the 15 s budget.
    monkeypatch.setattr(auth, "METADATA_PROBE_SECONDS", 1)
    _, client = gateway(sdk_retry_timeout_seconds=15)
    workspace.inject(Fault(path="/Me", drop=True, times=2))
    response = run(client, "me")
    assert response.status_code == 200, response.text
    assert not workspace.faults


@pytest.mark.timeout(60)  # the hang guard: without the probe's cap this takes the 110 s budget
def test_client_construction_against_an_unreachable_host_spends_only_the_probe_budget(
    monkeypatch,
):
    from gateway import auth
    from gateway.auth import Identity, SdkBackend
    from gateway.settings import Settings

    # The cap's size is not the point: a 1 s probe keeps the test short.
    monkeypatch.setattr(auth, "METADATA_PROBE_SECONDS", 1)
    backend = SdkBackend(
        Settings(databricks_host="http://127.0.0.1:9", sdk_retry_timeout_seconds=110)
    )
    client = backend.client(Identity("user", "http://127.0.0.1:9", "dapi-x"))
    assert client.config.retry_timeout_seconds == 110


# --- answers that are not the API: a login or proxy page ---------------------------------------


def test_a_200_html_page_is_a_bad_response_not_a_500(gateway, workspace):
    _, client = gateway(sdk_retry_timeout_seconds=2)
    workspace.inject(Fault(path="/Me", body=LOGIN_PAGE, times=None))
    response = run(client, "me")
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_BAD_RESPONSE")
    assert "sign in" not in response.text


def test_read_file_never_returns_an_html_page_as_the_file(gateway, workspace):
    _, client = gateway()
    run(client, "write_file", path=f"{VOL}/a.bin", content="real bytes")
    workspace.inject(Fault(path="/fs/files", method="GET", body=LOGIN_PAGE))
    response = client.post("/run", json={"op": "read_file", "path": f"{VOL}/a.bin"})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "DATABRICKS_BAD_RESPONSE"


def test_write_file_never_reports_success_for_an_html_page(gateway, workspace):
    _, client = gateway()
    workspace.inject(Fault(path="/fs/files", method="PUT", body=LOGIN_PAGE))
    response = run(client, "write_file", path=f"{VOL}/b.bin", content="data")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "DATABRICKS_BAD_RESPONSE"
    assert not workspace.files_root.joinpath("main/app/files/b.bin").exists()


def test_a_failing_external_link_is_mapped(gateway, workspace):
    workspace.warehouse.chunk_rows = 2
    _, client = gateway()
    workspace.inject(Fault(path="/external/", status=500, times=None))
    response = run(client, "run_query", statement="SELECT 1 AS x", disposition="EXTERNAL_LINKS")
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_ERROR")


def test_a_refused_connection_during_read_file_is_503(gateway):
    _, client = gateway(databricks_host="http://127.0.0.1:9", sdk_retry_timeout_seconds=1)
    response = client.post("/run", json={"op": "read_file", "path": f"{VOL}/a.bin"})
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (503, "DATABRICKS_UNREACHABLE")


def test_an_external_link_answering_html_is_a_bad_response(gateway, workspace):
    workspace.warehouse.chunk_rows = 2
    _, client = gateway()
    workspace.inject(Fault(path="/external/", body=LOGIN_PAGE, times=None))
    response = run(client, "run_query", statement="SELECT 1 AS x", disposition="EXTERNAL_LINKS")
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_BAD_RESPONSE")
    assert "sign in" not in response.text


# --- killing the mutants that mattered (scripts/mutation.sh) -----------------------------------


def test_raw_error_responses_map_by_databricks_code_then_status():
    from gateway.errors import error_from_response

    gone = error_from_response(400, b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "gone"}')
    assert isinstance(gone, sdk_errors.NotFound)  # the code wins over the status
    assert (str(gone), gone.error_code) == ("gone", "RESOURCE_DOES_NOT_EXIST")
    page = error_from_response(503, b"<html>proxy</html>", retry_after="7")
    assert isinstance(page, sdk_errors.TemporarilyUnavailable)  # no JSON: by status
    assert (str(page), page.error_code, page.retry_after_secs) == ("Service Unavailable", None, 7)


def test_an_unknown_databricks_error_never_shows_its_message():
    mapped = translate(sdk_errors.DatabricksError("internal detail 7f3a", error_code=None))
    assert (mapped.status, mapped.code) == (502, "DATABRICKS_ERROR")
    assert "7f3a" not in mapped.message
    assert mapped.databricks_error_code is None


# --- answers of a shape the API never sends (gateway/answers.py) -------------------------------

STATEMENTS_PATH = "/api/2.0/sql/statements/"
SUCCEEDED = {"statement_id": "01f0", "status": {"state": "SUCCEEDED"}}
INT_COLUMN = {
    "format": "JSON_ARRAY",
    "schema": {"columns": [{"name": "a", "type_name": "INT", "type_text": "INT", "position": 0}]},
    "total_chunk_count": 1,
}

# (method the fault answers, its JSON body): each was a 500 (an AttributeError, an IndexError,
# an AssertionError, a ValueError in our code) before the answers were checked where they come.
ODD_STATEMENT_ANSWERS = [
    ("POST", {}),  # a submit naming no statement
    ("POST", {"statement_id": "01f0", "status": "SUCCEEDED"}),
    ("GET", {**SUCCEEDED, "manifest": {"schema": {"columns": 5}}}),
    ("GET", {**SUCCEEDED, "manifest": {**INT_COLUMN, "total_chunk_count": "x"}}),
    ("GET", {"statement_id": "01f0", "status": {"state": "FAILED", "error": "boom"}}),
    ("GET", {**SUCCEEDED, "manifest": INT_COLUMN, "result": {"data_array": "abc"}}),
    ("GET", {**SUCCEEDED, "manifest": INT_COLUMN, "result": {"data_array": [[]]}}),
    ("GET", {**SUCCEEDED, "manifest": INT_COLUMN, "result": {"data_array": [["one"]]}}),
    ("GET", {**SUCCEEDED, "manifest": INT_COLUMN, "result": {"data_array": [[{"x": 1}]]}}),
    ("GET", {**SUCCEEDED, "manifest": INT_COLUMN, "result": {"external_links": ["x"]}}),
    *(
        ("GET", {**SUCCEEDED, "manifest": INT_COLUMN, "result": {"external_links": [link]}})
        for link in (
            {"external_link": "http://[::1"},  # a port httpx cannot read: InvalidURL
            {"external_link": "file:///etc/passwd"},
            {"external_link": "https://storage.example/c0", "http_headers": {"x": "a\r\nb"}},
            {"external_link": "https://storage.example/c0", "http_headers": {"x\n": "1"}},
            {"external_link": "https://storage.example/c0", "http_headers": {"x": "é"}},
        )
    ),
    ("GET", {**SUCCEEDED, "manifest": INT_COLUMN, "result": {"attachment": "!!not base64"}}),
]


@pytest.mark.parametrize(("method", "body"), ODD_STATEMENT_ANSWERS)
@pytest.mark.parametrize("accept", ["application/json", "application/x-ndjson"])
def test_a_statement_answer_of_another_shape_is_a_bad_response(
    gateway, workspace, method, body, accept
):
    fault = Fault(
        path=STATEMENTS_PATH,
        method=method,
        body=orjson.dumps(body),
        content_type="application/json",
        times=None,
    )
    workspace.inject(fault)
    _, client = gateway()
    response = client.post(
        "/run", json={"op": "run_query", "statement": "SELECT 1 AS a"}, headers={"Accept": accept}
    )
    if response.status_code == 200:  # a stream that had begun ends with an error line instead
        assert accept == "application/x-ndjson"
        error = orjson.loads(response.content.splitlines()[-1])["error"]
    else:
        error = response.json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_BAD_RESPONSE")


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"contents": 5},
        {"contents": ["x"]},
        {"contents": [{"name": 7}]},
        # A time past the year 9999 (was a 500: datetime's OverflowError).
        {"contents": [{"path": "/Volumes/main/app/files/a", "last_modified": 10**17}]},
    ],
)
def test_a_directory_page_of_another_shape_is_a_bad_response(gateway, workspace, body):
    fault = Fault(
        path="/api/2.0/fs/directories/",
        body=orjson.dumps(body),
        content_type="application/json",
        times=None,
    )
    workspace.inject(fault)
    _, client = gateway()
    error = run(client, "list_directory", path="/Volumes/main/app/files").json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_BAD_RESPONSE")


def _listing_of(*entries: dict) -> Fault:
    body = orjson.dumps({"contents": list(entries)})
    return Fault(path="/api/2.0/fs/directories/", body=body, content_type="application/json")


@pytest.mark.parametrize(
    "path",
    [
        "/Volumes/main/app/other/d/x.txt",  # another volume
        "/Volumes/main/app/files/d/e/x.txt",  # deeper than a child
        "/Volumes/main/app/files/d/../x.txt",
        "/Volumes/main/app/files/d/",  # the directory itself
        "/Volumes/main/app/files/D/x.txt",  # below the volume, case is a name's own
        "",
        None,
    ],
)
def test_a_listing_entry_that_is_no_child_of_its_directory_is_a_bad_response(
    gateway, workspace, path
):
    workspace.inject(_listing_of({"path": path, "name": "x.txt", "is_directory": False}))
    _, client = gateway()
    error = run(client, "list_directory", path="/Volumes/main/app/files/d").json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_BAD_RESPONSE")


def test_a_listing_entry_may_end_in_a_slash_and_name_its_volume_in_another_case(gateway, workspace):
    # Both unverified of the real service: a directory's path with its trailing slash, and
    # Unity Catalog's names lowercased (or not) against the path asked for.
    workspace.inject(
        _listing_of(
            {"path": "/Volumes/MAIN/app/files/sub/", "name": "sub", "is_directory": True},
            {"path": "/Volumes/main/app/files/a.txt", "is_directory": False, "file_size": 1},
        )
    )
    _, client = gateway()
    listing = run(client, "list_directory", path="/Volumes/Main/App/files").json()["result"]
    assert [(e["name"], e["path"]) for e in listing["entries"]] == [
        ("sub", "/Volumes/MAIN/app/files/sub/"),
        ("a.txt", "/Volumes/main/app/files/a.txt"),  # a name left out: the path's last part
    ]


def test_a_directory_page_of_null_contents_lists_nothing(gateway, workspace):
    body = orjson.dumps({"contents": None})
    workspace.inject(
        Fault(path="/api/2.0/fs/directories/", body=body, content_type="application/json")
    )
    _, client = gateway()
    listing = run(client, "list_directory", path="/Volumes/main/app/files").json()["result"]
    assert listing["entries"] == []


def test_an_arrow_stream_whose_first_chunk_fails_is_an_error_answer(gateway, workspace):
    # A binary stream has no place for an error once its head is out: what fails before its
    # first byte is answered as the op's error.
    workspace.warehouse.chunk_rows = 2
    _, client = gateway()
    workspace.inject(Fault(path="/external/", body=LOGIN_PAGE, times=None))
    arrow = {"Accept": "application/vnd.apache.arrow.stream"}
    response = client.post(
        "/run", json={"op": "run_query", "statement": "SELECT 1 AS x"}, headers=arrow
    )
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_BAD_RESPONSE")


def test_a_stream_databricks_cuts_is_logged_as_its_failure_not_as_a_bug(gateway, workspace, caplog):
    # Chunk 0 streams, then chunk 1 (its link and its lookup) answers a login page: the stream
    # is cut for the caller, and the log names the upstream failure; no traceback says "bug".
    caplog.set_level("INFO")
    workspace.warehouse.chunk_rows = 2
    _, client = gateway()
    workspace.inject(Fault(path="/1", method="GET", body=LOGIN_PAGE, times=None))
    arrow = {"Accept": "application/vnd.apache.arrow.stream"}
    statement = "SELECT range AS x FROM range(5)"
    with pytest.raises(httpx.RemoteProtocolError):  # cut, never a quiet end
        client.post("/run", json={"op": "run_query", "statement": statement}, headers=arrow)
    cut = [r for r in caplog.records if r.getMessage() == "stream cut by a Databricks failure"]
    assert [getattr(r, "code", None) for r in cut] == ["DATABRICKS_BAD_RESPONSE"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    request = [r for r in caplog.records if r.getMessage() == "request"]
    assert [getattr(r, "error_code", None) for r in request] == ["DATABRICKS_BAD_RESPONSE"]
