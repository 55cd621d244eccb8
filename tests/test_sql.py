"""run_query through the gateway, the real SDK and the fake DuckDB warehouse."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import respx

from gateway.registry import ARROW_STREAM
from gateway.testing import Fault
from tests.support import run, wait_until

SALES = "demo.shop.sales"


def result(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()["result"]


def query(client, statement, **params):
    return run(client, "run_query", statement=statement, **params)


def stream_lines(client, **params) -> list:
    response = client.post(
        "/run", json={"op": "run_query", **params}, headers={"Accept": "application/x-ndjson"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [orjson.loads(line) for line in response.content.splitlines()]


@pytest.mark.parametrize(
    ("value", "expected", "sql_type"),
    [
        (True, True, "BOOLEAN"),
        (42, 42, "LONG"),
        (2.5, 2.5, "DOUBLE"),
        ("text", "text", "STRING"),
        (None, None, "STRING"),
        ("'; DROP TABLE demo.shop.sales; --", "'; DROP TABLE demo.shop.sales; --", "STRING"),
    ],
)
def test_object_parameters_are_bound_with_inferred_types(
    gateway, workspace, value, expected, sql_type
):
    _, client = gateway()
    out = result(query(client, "SELECT :v AS v", parameters={"v": value}))
    assert out["rows"] == [[expected]]
    assert out["columns"][0]["type"] == sql_type
    sent = workspace.warehouse.submitted[-1]
    assert sent["statement"] == "SELECT :v AS v"  # never interpolated
    assert result(query(client, f"SELECT count(*) AS n FROM {SALES}"))["rows"] == [[5]]


@pytest.mark.parametrize(
    "body",
    [
        b'{"op":"run_query","statement":"SELECT :v","parameters":{"v":18446744073709551616}}',
        b'{"op":"run_query","statement":"SELECT :v","parameters":{"v":9223372036854775808}}',
        b'{"op":"run_query","statement":"SELECT :v","parameters":[{"name":"v","value":-9223372036854775809}]}',
    ],
    ids=["past-u64", "past-i64", "below-i64-list-form"],
)
def test_integers_outside_64_bits_are_400_naming_the_parameter(gateway, workspace, body):
    _, client = gateway()
    submitted = len(workspace.warehouse.submitted)
    response = client.post("/run", content=body, headers={"content-type": "application/json"})
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (400, "INVALID_PARAMS")
    assert error["details"]["field"] == "parameters.v"
    assert len(workspace.warehouse.submitted) == submitted  # nothing reached the warehouse


def test_row_limit_past_64_bits_is_400_naming_it(gateway):
    _, client = gateway()
    error = query(client, "SELECT 1", row_limit=2**63).json()["error"]
    assert (error["status"], error["code"]) == (400, "INVALID_PARAMS")
    assert "row_limit" in error["message"]


def test_explicit_parameter_types(gateway):
    _, client = gateway()
    params = [
        {"name": "d", "value": "2024-02-29", "type": "DATE"},
        {"name": "t", "value": "2024-01-02 03:04:05", "type": "TIMESTAMP"},
        {"name": "m", "value": "12.345", "type": "DECIMAL(10,3)"},
        {"name": "n", "value": None, "type": "INT"},
    ]
    out = result(query(client, "SELECT :d AS d, :t AS t, :m AS m, :n AS n", parameters=params))
    assert out["rows"] == [["2024-02-29", "2024-01-02T03:04:05.000Z", "12.345", None]]
    assert [c["type"] for c in out["columns"]] == ["DATE", "TIMESTAMP", "DECIMAL", "INT"]


def test_filtering_with_a_parameter(gateway):
    _, client = gateway()
    out = result(
        query(
            client,
            f"SELECT id FROM {SALES} WHERE region = :r ORDER BY id",
            parameters={"r": "north"},
        )
    )
    assert out["rows"] == [[1], [3]]


@pytest.mark.parametrize(
    ("typed_values", "omit_type_names"),
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["strings", "typed-json", "type-text-only", "typed-json-type-text-only"],
)
def test_values_are_typed_for_every_type(gateway, workspace, typed_values, omit_type_names):
    # Databricks sends strings; some compatible servers send JSON-typed values, or columns
    # with only `type_text`: the caller sees the same answer either way.
    workspace.warehouse.typed_values = typed_values
    workspace.warehouse.omit_type_names = omit_type_names
    _, client = gateway()
    statement = """SELECT 1::TINYINT AS b, 2::SMALLINT AS s, 3::INTEGER AS i,
        9007199254740991::BIGINT AS safe, 9007199254740993::BIGINT AS big, 1.5::FLOAT AS f,
        2.25::DOUBLE AS d, 'NaN'::DOUBLE AS nan, true AS flag, 1.25::DECIMAL(5,2) AS dec,
        DATE '2024-01-02' AS day, TIMESTAMP '2024-01-02 03:04:05.678' AS ts, 'ab'::BLOB AS bin,
        [1, 2] AS arr, {'a': 1, 'b': 'x'} AS st, MAP {'k': 1} AS mp, NULL::INTEGER AS nul, 'x' AS str"""
    out = result(query(client, statement))
    assert out["rows"] == [
        [
            1,
            2,
            3,
            9007199254740991,
            "9007199254740993",
            1.5,
            2.25,
            "NaN",
            True,
            "1.25",
            "2024-01-02",
            "2024-01-02T03:04:05.678Z",
            "YWI=",
            [1, 2],
            {"a": 1, "b": "x"},
            {"k": 1},
            None,
            "x",
        ]
    ]
    types = [c["type"] for c in out["columns"]]
    assert types == [
        "BYTE",
        "SHORT",
        "INT",
        "LONG",
        "LONG",
        "FLOAT",
        "DOUBLE",
        "DOUBLE",
        "BOOLEAN",
        "DECIMAL",
        "DATE",
        "TIMESTAMP",
        "BINARY",
        "ARRAY",
        "STRUCT",
        "MAP",
        "INT",
        "STRING",
    ]


def test_every_chunk_is_read(gateway, workspace):
    workspace.warehouse.chunk_rows = 7
    _, client = gateway()
    out = result(
        query(client, "SELECT tpep_pickup_datetime FROM samples.nyctaxi.trips ORDER BY 1 LIMIT 40")
    )
    assert out["row_count"] == 40 and not out["truncated"]
    statement = workspace.warehouse.statements[out["statement_id"]]
    assert sorted(statement.fetched_chunks) == [0, 1, 2, 3, 4, 5]


def test_streamed_result_shape_and_every_chunk(gateway, workspace):
    workspace.warehouse.chunk_rows = 3
    _, client = gateway()
    lines = stream_lines(client, statement=f"SELECT id, paid FROM {SALES} ORDER BY id")
    assert lines[0]["columns"] == [
        {"name": "id", "type": "LONG", "type_text": "BIGINT"},
        {"name": "paid", "type": "BOOLEAN", "type_text": "BOOLEAN"},
    ]
    assert lines[0]["statement_id"]
    assert lines[1:-1] == [[1, True], [2, False], [3, True], [4, None], [5, True]]
    assert lines[-1] == {"row_count": 5, "truncated": False}


def test_inline_cap_says_truncated(gateway, workspace):
    workspace.warehouse.chunk_rows = 10
    _, client = gateway(max_inline_rows=25)
    out = result(query(client, "SELECT * FROM samples.nyctaxi.trips"))
    assert (out["row_count"], out["truncated"]) == (25, True)


def test_row_limit_truncation_is_reported(gateway):
    _, client = gateway()
    out = result(query(client, f"SELECT id FROM {SALES}", row_limit=2))
    assert (out["row_count"], out["truncated"]) == (2, True)


def test_objects_never_collapse_duplicate_columns(gateway):
    _, client = gateway()
    out = result(query(client, "SELECT 1 AS a, 2 AS a, 3 AS a_2", rows_as="objects"))
    assert out["rows"] == [{"a": 1, "a_2": 2, "a_2_2": 3}]
    assert [c["key"] for c in out["columns"]] == ["a", "a_2", "a_2_2"]


def test_failed_statement_maps_to_sql_error(gateway):
    _, client = gateway()
    error = query(client, "SELECT * FROM missing_table").json()["error"]
    assert (error["status"], error["code"]) == (400, "SQL_ERROR")
    assert error["details"]["sql_state"] == "42P01"
    assert "TABLE_OR_VIEW_NOT_FOUND" in error["message"]


def test_a_statement_in_a_state_newer_than_the_gateway_is_polled_until_it_ends(gateway, workspace):
    # Four polls answer a state the API does not document yet; then the warehouse's own.
    workspace.warehouse.pending_seconds = 0.2
    queued = orjson.dumps({"statement_id": "s", "status": {"state": "QUEUED"}})
    workspace.inject(
        Fault(
            path="/api/2.0/sql/statements/",
            method="GET",
            body=queued,
            content_type="application/json",
            times=4,
        )
    )
    response = run(gateway()[1], "run_query", statement="SELECT 1 AS a")
    assert response.json()["result"]["rows"] == [[1]]


@pytest.mark.parametrize("status", [{}, {"state": None}, {"state": ""}])
def test_a_statement_answer_naming_no_state_is_a_bad_response(gateway, workspace, status):
    workspace.warehouse.pending_seconds = 0.2
    body = orjson.dumps({"statement_id": "s", "status": status})
    workspace.inject(
        Fault(
            path="/api/2.0/sql/statements/",
            method="GET",
            body=body,
            content_type="application/json",
        )
    )
    error = run(gateway()[1], "run_query", statement="SELECT 1 AS a").json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_BAD_RESPONSE")


def test_multiple_statements_fail(gateway):
    _, client = gateway()
    assert query(client, "SELECT 1; SELECT 2").json()["error"]["code"] == "SQL_ERROR"


def test_deadline_cancels_the_statement_on_the_warehouse(gateway, workspace):
    workspace.warehouse.delay_seconds = 30
    _, client = gateway()
    error = query(client, "SELECT 1", timeout_seconds=1).json()["error"]
    assert (error["status"], error["code"]) == (504, "QUERY_TIMEOUT")
    assert error["details"]["statement_id"] in workspace.warehouse.canceled


def test_client_disconnect_while_waiting_cancels(gateway, workspace):
    workspace.warehouse.delay_seconds = 30
    server, _ = gateway()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{server.url}/run", json={"op": "run_query", "statement": "SELECT 1"}, timeout=1.5
        )
    wait_until(lambda: workspace.warehouse.canceled)
    assert len(workspace.warehouse.canceled) == 1
    # No public view of the statement registry: a leaked entry would only delay shutdown.
    wait_until(lambda: server.runtime.running_statements == {})


def test_client_disconnect_mid_stream_cancels(gateway, workspace):
    workspace.warehouse.chunk_rows = 1
    _, client = gateway()
    body = {"op": "run_query", "statement": "SELECT * FROM samples.nyctaxi.trips"}
    with client.stream(
        "POST", "/run", json=body, headers={"Accept": "application/x-ndjson"}
    ) as response:
        lines = response.iter_lines()
        assert "columns" in orjson.loads(next(lines))
        next(lines)
    wait_until(lambda: workspace.warehouse.canceled)
    assert len(workspace.warehouse.canceled) == 1
    fetched = workspace.warehouse.statements[workspace.warehouse.canceled[0]].fetched_chunks
    assert len(fetched) < 200  # chunks are fetched as the client reads, not all up front


def test_error_after_the_first_byte_ends_the_stream_with_an_error_line(gateway, workspace):
    workspace.warehouse.chunk_rows = 2
    _, client = gateway()
    from gateway.testing import Fault

    workspace.inject(Fault(path="/result/chunks/1", status=500, times=None))
    lines = stream_lines(client, statement=f"SELECT id FROM {SALES} ORDER BY id")
    assert lines[1:3] == [[1], [2]]
    assert lines[-1]["error"]["code"] == "DATABRICKS_ERROR"
    assert "row_count" not in lines[-1]


def test_warehouse_is_required(gateway):
    _, client = gateway(warehouse_id=None)
    error = query(client, "SELECT 1").json()["error"]
    assert error["code"] == "WAREHOUSE_REQUIRED" and "DATABRICKS_WAREHOUSE_ID" in error["message"]


def test_statement_xor_query(gateway):
    _, client = gateway()
    assert run(client, "run_query").json()["error"]["code"] == "INVALID_PARAMS"
    assert run(client, "run_query", statement="SELECT 1", query="x").status_code == 400


@pytest.fixture
def queries(tmp_path):
    (tmp_path / "sales_by_region.sql").write_text(
        "-- @param region STRING\n-- @param min_amount DECIMAL(10,2)\n"
        f"SELECT id, amount FROM {SALES}\nWHERE region = :region AND amount >= :min_amount -- ':ignored'\nORDER BY id\n"
    )
    return tmp_path


def test_named_queries(gateway, workspace, queries):
    _, client = gateway(queries_dir=queries, allow_raw_sql=False)
    out = result(
        run(
            client,
            "run_query",
            query="sales_by_region",
            parameters={"region": "north", "min_amount": 125},
        )
    )
    assert out["rows"] == [[3, "130.00"]]
    sent = workspace.warehouse.submitted[-1]["parameters"]
    assert {"name": "min_amount", "value": "125", "type": "DECIMAL(10,2)"} in sent
    missing = run(
        client, "run_query", query="sales_by_region", parameters={"region": "north"}
    ).json()["error"]
    assert missing["code"] == "PARAMETER_MISMATCH" and missing["details"]["missing"] == [
        "min_amount"
    ]
    extra = run(
        client,
        "run_query",
        query="sales_by_region",
        parameters={"region": "n", "min_amount": 1, "x": 1},
    ).json()["error"]
    assert extra["details"]["unexpected"] == ["x"]
    assert run(client, "run_query", query="nope").json()["error"]["code"] == "QUERY_NOT_FOUND"
    assert run(client, "run_query", query="../etc").json()["error"]["code"] == "INVALID_PARAMS"


def test_raw_sql_can_be_disabled(gateway, queries):
    _, client = gateway(queries_dir=queries, allow_raw_sql=False)
    error = query(client, "SELECT 1").json()["error"]
    assert (error["status"], error["code"]) == (403, "RAW_SQL_DISABLED")


def test_external_links_are_fetched_without_authorization(gateway, workspace):
    workspace.warehouse.chunk_rows = 2
    _, client = gateway()
    out = result(query(client, f"SELECT id FROM {SALES} ORDER BY id", disposition="EXTERNAL_LINKS"))
    assert out["rows"] == [[1], [2], [3], [4], [5]]
    fetches = workspace.warehouse.link_fetches
    assert len(fetches) == 3 and all(authorization is None for *_, authorization in fetches)


def test_external_link_host_never_sees_the_token(gateway, workspace):
    workspace.warehouse.chunk_rows = 2
    workspace.warehouse.external_base = "https://links.storage.test"
    _, client = gateway()
    seen: list[httpx.Request] = []

    def serve(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        statement_id, chunk = request.url.path.split("/")[2:4]
        statement = workspace.warehouse.statements[statement_id]
        body, kind = workspace.warehouse.link_body(statement, int(chunk))
        return httpx.Response(200, content=body, headers={"content-type": kind})

    # Caught where our code hands a request to httpx, whichever transport sends it (the links
    # client's is aiohttp, which respx's default httpcore patch would not see).
    with respx.mock(using="httpx", assert_all_called=True) as mock:
        mock.route(host="links.storage.test").mock(side_effect=serve)
        mock.route(host="127.0.0.1").pass_through()
        out = result(
            query(client, f"SELECT id FROM {SALES} ORDER BY id", disposition="EXTERNAL_LINKS")
        )
    assert out["row_count"] == 5
    assert len(seen) == 3
    assert all("authorization" not in r.headers for r in seen)


# One chunk of about 1.5 MB (5,000 rows of 300 characters), over a 1 MiB GATEWAY_MAX_CHUNK_BYTES.
WIDE = "SELECT range AS id, repeat('x', 300) AS pad FROM range(5000)"


@pytest.mark.parametrize("length", ["announced", "absurd", "unannounced", "within the limit"])
def test_a_link_chunk_over_the_limit_is_a_bad_response(gateway, workspace, length):
    workspace.warehouse.external_base = "https://links.storage.test"
    limit = 1024 * 1024 if length != "within the limit" else 8 * 1024 * 1024
    _, client = gateway(max_chunk_bytes=limit)

    def serve(request: httpx.Request) -> httpx.Response:
        statement_id, chunk = request.url.path.split("/")[2:4]
        statement = workspace.warehouse.statements[statement_id]
        body, kind = workspace.warehouse.link_body(statement, int(chunk))
        if length == "absurd":  # 100 TB announced: no buffer of that size may be made
            headers = {"content-type": kind, "content-length": str(10**14)}
            return httpx.Response(200, content=body[:10], headers=headers)
        if length == "unannounced":

            async def pieces() -> AsyncIterator[bytes]:
                yield body[: len(body) // 2]
                yield body[len(body) // 2 :]

            return httpx.Response(200, content=pieces(), headers={"content-type": kind})
        return httpx.Response(200, content=body, headers={"content-type": kind})

    with respx.mock(using="httpx", assert_all_called=True) as mock:
        mock.route(host="links.storage.test").mock(side_effect=serve)
        mock.route(host="127.0.0.1").pass_through()
        response = query(client, WIDE, disposition="EXTERNAL_LINKS")
    if length == "within the limit":
        assert result(response)["row_count"] == 5000
        return
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_BAD_RESPONSE")


@pytest.mark.parametrize("accept", ["application/json", "application/x-ndjson", ARROW_STREAM])
@pytest.mark.parametrize("body", [b"", b"<Error><Code>TemporaryRedirect</Code></Error>"])
def test_a_link_that_redirects_is_a_bad_response_and_is_not_followed(
    gateway, workspace, accept, body
):
    # Storage never redirects a presigned link that works (its signature names the host); a
    # redirect's body is no chunk, and the link's headers are not for another host.
    workspace.warehouse.external_base = "https://links.storage.test"
    _, client = gateway()
    redirect = httpx.Response(
        307, content=body, headers={"location": "https://elsewhere.storage.test/x"}
    )
    with respx.mock(using="httpx", assert_all_called=False) as mock:
        links = mock.route(host="links.storage.test").mock(return_value=redirect)
        elsewhere = mock.route(host="elsewhere.storage.test").respond(200, content=b"")
        mock.route(host="127.0.0.1").pass_through()
        response = run(
            client,
            "run_query",
            {"Accept": accept},
            statement=f"SELECT id FROM {SALES}",
            disposition="EXTERNAL_LINKS",
        )
    assert links.called and not elsewhere.called
    if accept == "application/x-ndjson":  # its head is out before the first chunk is read
        assert response.status_code == 200
        error = orjson.loads(response.text.splitlines()[-1])["error"]
    else:
        error = response.json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_BAD_RESPONSE")


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_nan_and_infinity_are_400_saying_why(gateway, workspace, literal):
    _, client = gateway()
    body = b'{"op":"run_query","statement":"SELECT :v","parameters":{"v":' + literal + b"}}"
    response = client.post("/run", content=body, headers={"content-type": "application/json"})
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (400, "INVALID_JSON")
    assert "column" in error["message"]  # where in the body, from the parser


def statement_posts(workspace) -> int:
    return sum(1 for r in workspace.requests if r.method == "POST" and r.path == STATEMENTS)


STATEMENTS = "/api/2.0/sql/statements/"


def test_a_submit_answered_late_is_not_sent_again(gateway, workspace):
    # The SDK's client sends a request again after a read timeout: a statement would then run
    # twice (an INSERT twice). Here the first submit is answered after the 1 s HTTP timeout.
    from gateway.testing import Fault

    _, client = gateway(sdk_http_timeout_seconds=1, sdk_retry_timeout_seconds=8)
    workspace.inject(Fault(path=STATEMENTS, method="POST", delay=3))
    before = statement_posts(workspace)
    response = query(client, "SELECT 1 AS x")
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "DATABRICKS_TIMEOUT"
    assert statement_posts(workspace) - before == 1


def test_a_throttled_submit_is_sent_again(gateway, workspace):
    # 429 with Retry-After: the warehouse ran nothing, so the submit goes again.
    from gateway.testing import Fault

    _, client = gateway()
    workspace.inject(Fault(path=STATEMENTS, method="POST", status=429, retry_after=0, times=2))
    before = statement_posts(workspace)
    response = query(client, "SELECT 1 AS x")
    assert response.status_code == 200
    assert response.json()["result"]["rows"] == [[1]]
    assert statement_posts(workspace) - before == 3


def _answered_with(value: object, type_name: str) -> bytes:
    """A submit's answer: done, one column of `type_name`, one row holding `value`."""
    return orjson.dumps(
        {
            "statement_id": "s-typed",
            "status": {"state": "SUCCEEDED"},
            "manifest": {
                "format": "JSON_ARRAY",
                "schema": {
                    "column_count": 1,
                    "columns": [{"name": "v", "type_name": type_name, "position": 0}],
                },
                "total_chunk_count": 1,
                "total_row_count": 1,
                "truncated": False,
            },
            "result": {"chunk_index": 0, "row_offset": 0, "row_count": 1, "data_array": [[value]]},
        }
    )


@pytest.mark.parametrize(
    ("value", "type_name", "expected"),
    [
        ("TRUE", "BOOLEAN", True),
        ("false", "BOOLEAN", False),
        (False, "BOOLEAN", False),
        (42.0, "INT", 42),
        ("-7", "LONG", -7),
    ],
)
def test_value_variants_a_server_may_send_are_typed(gateway, workspace, value, type_name, expected):
    body = _answered_with(value, type_name)
    workspace.inject(Fault(path="/api/2.0/sql/statements", method="POST", body=body))
    out = result(query(gateway()[1], "SELECT 1 AS v"))
    assert out["statement_id"] == "s-typed"  # the answer above, not the fake's own
    assert out["rows"] == [[expected]]
    assert type(out["rows"][0][0]) is type(expected)


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ("yes", "BOOLEAN"),
        ("1", "BOOLEAN"),
        (1, "BOOLEAN"),
        ("", "BOOLEAN"),
        (1.5, "INT"),
        (True, "LONG"),
        ("1.5", "INT"),
        (True, "DOUBLE"),
    ],
)
def test_a_value_its_column_type_cannot_hold_is_a_bad_response(
    gateway, workspace, value, type_name
):
    # Read as false (a BOOLEAN) or cut to 1 (an INT), it would be a wrong answer given as right.
    body = _answered_with(value, type_name)
    workspace.inject(Fault(path="/api/2.0/sql/statements", method="POST", body=body))
    error = query(gateway()[1], "SELECT 1 AS v").json()["error"]
    assert (error["status"], error["code"]) == (502, "DATABRICKS_BAD_RESPONSE")


@pytest.mark.parametrize("accept", ["application/json", "application/x-ndjson"])
def test_a_statement_run_in_a_catalog_and_schema_finds_its_tables_and_returns_its_rows(
    gateway, accept
):
    # `catalog`/`schema` set the statement's context: unqualified names resolve in it.
    response = run(
        gateway()[1],
        "run_query",
        {"Accept": accept},
        statement="SELECT id FROM sales ORDER BY id",
        catalog="demo",
        schema="shop",
    )
    assert response.status_code == 200, response.text
    if accept == "application/x-ndjson":
        rows = [orjson.loads(line) for line in response.content.splitlines()[1:-1]]
    else:
        rows = response.json()["result"]["rows"]
    assert rows == [[1], [2], [3], [4], [5]]
