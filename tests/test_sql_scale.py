"""run_query at real scale: shapes, fallbacks, Arrow, prefetch, expiring links, long statements.

The fake warehouse behaves like Databricks SQL here (PENDING states, the INLINE byte cap,
byte-sized chunks, links on a separate host that expire and refuse Authorization), and its
switches reproduce what some warehouses do (JSON_ARRAY refused, INLINE Arrow attachments).
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pytest

from gateway.testing import DEMO
from tests.support import run, wait_until

ALICE = {"X-Databricks-Token": DEMO.alice_token}
BOB = {"X-Databricks-Token": DEMO.bob_token}
ALL_TYPES = """SELECT 1::TINYINT AS b, 9007199254740993::BIGINT AS big, 2.25::DOUBLE AS d,
    'NaN'::DOUBLE AS nan, true AS flag, 1.25::DECIMAL(5,2) AS dec, DATE '2024-01-02' AS day,
    TIMESTAMP '2024-01-02 03:04:05.678' AS ts, 'ab'::BLOB AS bin, [1, 2] AS arr,
    {'a': 1, 'b': 'x'} AS st, MAP {'k': 1} AS mp, NULL::INTEGER AS nul, 'x' AS str"""
MANY = "SELECT range AS i, 'row-' || range AS label FROM range({n})"


def rows_of(response: httpx.Response) -> list:
    assert response.status_code == 200, response.text
    return response.json()["result"]["rows"]


def ndjson(client, statement: str, headers: dict | None = None) -> list:
    response = client.post(
        "/run",
        json={"op": "run_query", "statement": statement},
        headers={"Accept": "application/x-ndjson", **(headers or {})},
    )
    assert response.status_code == 200, response.text
    return [orjson.loads(line) for line in response.content.splitlines()]


def shapes(workspace) -> list[tuple[str, str]]:
    return [(b.get("disposition"), b.get("format")) for b in workspace.warehouse.submitted]


def test_json_answers_go_inline_and_streams_go_external_arrow(gateway, workspace):
    _, client = gateway()
    as_json = rows_of(run(client, "run_query", statement=ALL_TYPES))
    lines = ndjson(client, ALL_TYPES)
    assert shapes(workspace) == [("INLINE", "JSON_ARRAY"), ("EXTERNAL_LINKS", "ARROW_STREAM")]
    # Arrow values get exactly the JSON values JSON_ARRAY strings get.
    assert lines[1:-1] == as_json
    assert as_json[0][:4] == [1, "9007199254740993", 2.25, "NaN"]
    assert lines[-1] == {"row_count": 1, "truncated": False}


def test_the_polling_loop_runs_through_pending_and_running(gateway, workspace):
    workspace.warehouse.pending_seconds = 0.3
    workspace.warehouse.delay_seconds = 0.3
    _, client = gateway()
    assert rows_of(run(client, "run_query", statement="SELECT 42 AS x")) == [[42]]
    polls = [r for r in workspace.requests if r.method == "GET" and "/sql/statements/" in r.path]
    assert len(polls) >= 2


def test_a_result_over_the_inline_cap_runs_again_with_external_links(gateway, workspace):
    workspace.warehouse.inline_byte_cap = 2_000  # Databricks: 25 MiB
    _, client = gateway()
    rows = rows_of(run(client, "run_query", statement=MANY.format(n=500)))
    assert len(rows) == 500 and rows[-1] == [499, "row-499"]
    assert shapes(workspace) == [("INLINE", "JSON_ARRAY"), ("EXTERNAL_LINKS", "ARROW_STREAM")]


def test_a_sql_error_is_never_taken_for_the_inline_cap(gateway, workspace):
    _, client = gateway()
    error = run(client, "run_query", statement="SELECT * FROM missing").json()["error"]
    assert (error["status"], error["code"]) == (400, "SQL_ERROR")
    assert len(workspace.warehouse.submitted) == 1  # not run again


def test_a_warehouse_refusing_json_array_is_served_through_arrow_and_remembered(gateway, workspace):
    workspace.warehouse.reject_json_array = True
    _, client = gateway()
    assert rows_of(run(client, "run_query", statement="SELECT 7 AS x")) == [[7]]
    assert shapes(workspace) == [
        ("INLINE", "JSON_ARRAY"),
        ("INLINE", "ARROW_STREAM"),
        ("EXTERNAL_LINKS", "ARROW_STREAM"),
    ]
    workspace.warehouse.submitted.clear()
    assert rows_of(run(client, "run_query", statement="SELECT 8 AS x")) == [[8]]
    assert shapes(workspace) == [("EXTERNAL_LINKS", "ARROW_STREAM")]  # no refusals twice


def test_an_inline_arrow_attachment_is_decoded(gateway, workspace):
    workspace.warehouse.reject_json_array = True
    workspace.warehouse.inline_arrow_attachment = True
    _, client = gateway()
    expected = None
    rows = rows_of(run(client, "run_query", statement=ALL_TYPES))
    assert shapes(workspace)[-1] == ("INLINE", "ARROW_STREAM")
    workspace.warehouse.reject_json_array = False
    workspace.warehouse.inline_arrow_attachment = False
    expected = rows_of(run(client, "run_query", statement=ALL_TYPES, disposition="INLINE"))
    assert rows == expected


def test_a_stream_on_a_warehouse_without_external_arrow_falls_back(gateway, workspace):
    _, client = gateway()
    workspace.warehouse.reject_arrow_stream = True
    lines = ndjson(client, MANY.format(n=3))
    assert lines[1:-1] == [[0, "row-0"], [1, "row-1"], [2, "row-2"]]
    assert shapes(workspace)[-1] == ("EXTERNAL_LINKS", "JSON_ARRAY")


def test_chunks_are_prefetched_in_parallel_and_delivered_in_order(gateway, workspace):
    workspace.warehouse.chunk_rows = 10
    workspace.warehouse.link_latency_seconds = 0.2
    _, client = gateway(prefetch_chunks=4)
    lines = ndjson(client, MANY.format(n=100))
    assert [row[0] for row in lines[1:-1]] == list(range(100))
    assert workspace.warehouse.most_links_in_flight > 1  # fetched ahead, concurrently
    assert workspace.warehouse.most_links_in_flight <= 4  # within the window


def test_an_expired_link_is_refreshed_and_reading_goes_on(gateway, workspace):
    workspace.warehouse.chunk_rows = 10
    workspace.warehouse.stale_links_to_issue = 2
    _, client = gateway()
    lines = ndjson(client, MANY.format(n=30))
    assert [row[0] for row in lines[1:-1]] == list(range(30))
    fetches = workspace.warehouse.link_fetches
    assert len(fetches) == 5  # three chunks, two of them twice
    assert all(authorization is None for *_, authorization in fetches)


def test_zero_rows_in_every_shape(gateway, workspace):
    _, client = gateway()
    empty = "SELECT 1 AS x WHERE false"
    assert rows_of(run(client, "run_query", statement=empty)) == []
    assert ndjson(client, empty)[1:] == [{"row_count": 0, "truncated": False}]
    arrow = client.post(
        "/run",
        json={"op": "run_query", "statement": empty},
        headers={"Accept": "application/vnd.apache.arrow.stream"},
    )
    table = pa.ipc.open_stream(arrow.content).read_all()
    assert (table.num_rows, table.column_names) == (0, ["x"])


def test_arrow_passthrough_is_one_ipc_stream_of_every_chunk(gateway, workspace):
    workspace.warehouse.chunk_rows = 7
    _, client = gateway()
    response = client.post(
        "/run",
        json={"op": "run_query", "statement": MANY.format(n=50)},
        headers={"Accept": "application/vnd.apache.arrow.stream"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(response.content).read_all()
    assert table.column("i").to_pylist() == list(range(50))
    assert table.schema.field("i").type == pa.int64()


def test_arrow_from_a_warehouse_without_arrow_is_one_stream_of_utf8_chunks(gateway, workspace):
    workspace.warehouse.chunk_rows = 4
    workspace.warehouse.reject_arrow_stream = True
    _, client = gateway()
    response = client.post(
        "/run",
        json={"op": "run_query", "statement": MANY.format(n=10)},
        headers={"Accept": "application/vnd.apache.arrow.stream"},
    )
    assert response.status_code == 200, response.text
    table = pa.ipc.open_stream(response.content).read_all()
    assert table.schema == pa.schema([("i", pa.string()), ("label", pa.string())])
    assert table.column("i").to_pylist() == [str(i) for i in range(10)]


def test_leaving_an_arrow_stream_cancels_the_statement(gateway, workspace):
    workspace.warehouse.chunk_rows = 5
    workspace.warehouse.link_latency_seconds = 0.3
    _, client = gateway(prefetch_chunks=1)
    with client.stream(
        "POST",
        "/run",
        json={"op": "run_query", "statement": MANY.format(n=100)},
        headers={"Accept": "application/vnd.apache.arrow.stream"},
    ) as response:
        next(response.iter_raw(16))
    statement_id = next(iter(workspace.warehouse.statements))
    wait_until(lambda: statement_id in workspace.warehouse.canceled)


# --- statements that outlive a request ------------------------------------------------------


def test_submitted_statements_belong_to_their_identity(gateway, workspace):
    workspace.warehouse.chunk_rows = 4
    workspace.warehouse.delay_seconds = 0.5
    _, client = gateway(auth_mode="user")
    submitted = run(client, "submit_query", headers=ALICE, statement=MANY.format(n=10))
    assert submitted.status_code == 200, submitted.text
    statement_id = submitted.json()["result"]["statement_id"]
    for op in ("query_status", "fetch_result", "cancel_query"):
        error = run(client, op, headers=BOB, statement_id=statement_id).json()["error"]
        assert (error["status"], error["code"]) == (404, "STATEMENT_NOT_FOUND"), op

    def status():
        return run(client, "query_status", headers=ALICE, statement_id=statement_id).json()

    wait_until(lambda: status()["result"]["state"] == "SUCCEEDED")
    done = status()["result"]
    assert (done["row_count"], done["chunk_count"]) == (10, 3)
    first = run(client, "fetch_result", headers=ALICE, statement_id=statement_id).json()["result"]
    assert first["rows"] == [[i, f"row-{i}"] for i in range(4)]
    assert first["next_chunk_index"] == 1
    last = run(
        client, "fetch_result", headers=ALICE, statement_id=statement_id, chunk_index=2
    ).json()["result"]
    assert last["rows"] == [[8, "row-8"], [9, "row-9"]] and last["next_chunk_index"] is None


def test_fetch_result_streams_from_a_chunk_with_resume_points(gateway, workspace):
    workspace.warehouse.chunk_rows = 4
    _, client = gateway()
    statement_id = run(client, "submit_query", statement=MANY.format(n=10)).json()["result"][
        "statement_id"
    ]
    wait_until(
        lambda: (
            run(client, "query_status", statement_id=statement_id).json()["result"]["state"]
            == "SUCCEEDED"
        )
    )
    response = client.post(
        "/run",
        json={"op": "fetch_result", "statement_id": statement_id, "chunk_index": 1},
        headers={"Accept": "application/x-ndjson"},
    )
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    assert lines[0]["statement_id"] == statement_id and lines[0]["chunk_index"] == 1
    assert lines[1:] == [
        *[[i, f"row-{i}"] for i in range(4, 8)],
        {"chunk_done": 1},
        [8, "row-8"],
        [9, "row-9"],
        {"chunk_done": 2},
        {"row_count": 6, "truncated": False},
    ]


def test_cancel_query_cancels_on_the_warehouse(gateway, workspace):
    workspace.warehouse.delay_seconds = 30
    _, client = gateway()
    statement_id = run(client, "submit_query", statement="SELECT 1").json()["result"][
        "statement_id"
    ]
    assert run(client, "cancel_query", statement_id=statement_id).status_code == 200
    assert statement_id in workspace.warehouse.canceled
    state = run(client, "query_status", statement_id=statement_id).json()["result"]
    assert state["state"] == "CANCELED" and state["error"]["code"] == "QUERY_CANCELED"
    error = run(client, "fetch_result", statement_id=statement_id).json()["error"]
    assert (error["status"], error["code"]) == (409, "QUERY_CANCELED")


# --- the fake, faithful ------------------------------------------------------------------------


@pytest.mark.parametrize("wait", ["1s", "4s", "51s", "10", "abc"])
def test_the_fake_refuses_invalid_wait_timeouts_like_databricks(workspace, wait):
    response = httpx.post(
        f"{workspace.url}/api/2.0/sql/statements/",
        json={"statement": "SELECT 1", "warehouse_id": DEMO.warehouse_id, "wait_timeout": wait},
        headers={"Authorization": f"Bearer {DEMO.service_token}"},
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


@pytest.mark.parametrize("token", ["not-a-token", "²"])
def test_the_fake_answers_a_bad_page_token_with_400(workspace, token):
    response = httpx.get(
        f"{workspace.url}/api/2.1/unity-catalog/catalogs",
        params={"page_token": token},
        headers={"Authorization": f"Bearer {DEMO.service_token}"},
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"


def test_the_fake_chunks_by_bytes(workspace):
    workspace.warehouse.chunk_bytes = 1024
    response = execute_on_the_fake(workspace, "SELECT repeat('x', 100) AS s FROM range(50)")
    chunks = response["manifest"]["chunks"]
    assert len(chunks) > 1
    assert all(c["byte_count"] <= 1024 for c in chunks)
    assert sum(c["row_count"] for c in chunks) == 50
    assert [c["row_offset"] for c in chunks] == [
        sum(c["row_count"] for c in chunks[:i]) for i in range(len(chunks))
    ]


def test_the_fake_cuts_arrow_chunks_by_their_arrow_size(workspace):
    # Databricks' byte_count of an ARROW_STREAM chunk is its Arrow size: 8 bytes a BIGINT here,
    # where its JSON text would be the digits, quotes and separators.
    workspace.warehouse.chunk_bytes = 1024
    response = execute_on_the_fake(
        workspace,
        "SELECT range AS id FROM range(1000)",
        disposition="EXTERNAL_LINKS",
        format="ARROW_STREAM",
    )
    chunks = response["manifest"]["chunks"]
    assert [c["row_count"] for c in chunks] == [128] * 7 + [104]
    assert [c["byte_count"] for c in chunks] == [1024] * 7 + [832]


def test_the_fake_closes_the_oldest_statements_past_its_results_budget(workspace):
    workspace.warehouse.results_budget_bytes = 10_000  # room for one of these results
    auth = {"Authorization": f"Bearer {DEMO.service_token}"}
    url = f"{workspace.url}/api/2.0/sql/statements/"
    body = {
        "statement": "SELECT range AS id FROM range(1000)",
        "warehouse_id": DEMO.warehouse_id,
        "wait_timeout": "5s",
        "disposition": "EXTERNAL_LINKS",
        "format": "ARROW_STREAM",
    }
    first = httpx.post(url, json=body, headers=auth).json()
    second = httpx.post(url, json=body, headers=auth).json()
    assert second["status"]["state"] == "SUCCEEDED"
    closed = httpx.get(f"{url}{first['statement_id']}", headers=auth).json()
    assert closed["status"]["state"] == "CLOSED" and "manifest" not in closed
    link = first["result"]["external_links"][0]["external_link"]
    assert httpx.get(link).status_code == 404


def test_the_fake_answers_wait_timeout_0s_before_the_query_has_run(workspace):
    # A 10M-row query once ran inside the submit request: past the SDK's HTTP timeout, the SDK
    # submitted it again and again and the gateway answered 504 with no rows.
    release = threading.Event()
    materialise = workspace.warehouse._materialise

    def slow_materialise(statement, body):
        assert release.wait(60)  # a hang guard: the test releases it below
        materialise(statement, body)

    workspace.warehouse._materialise = slow_materialise
    auth = {"Authorization": f"Bearer {DEMO.service_token}"}
    body = {"statement": "SELECT 1 AS x", "warehouse_id": DEMO.warehouse_id, "wait_timeout": "0s"}
    submitted = httpx.post(f"{workspace.url}/api/2.0/sql/statements/", json=body, headers=auth)
    assert submitted.json()["status"]["state"] in ("PENDING", "RUNNING")
    release.set()
    url = f"{workspace.url}/api/2.0/sql/statements/{submitted.json()['statement_id']}"
    wait_until(lambda: httpx.get(url, headers=auth).json()["status"]["state"] == "SUCCEEDED")
    assert httpx.get(url, headers=auth).json()["result"]["data_array"] == [["1"]]


def test_the_gateway_fetches_no_further_ahead_than_its_window(gateway, workspace):
    # Memory stays bounded by the window whatever the result size: while chunk 2 is held back,
    # chunks 3 to 5 may be fetched (4 in flight), and nothing after them; their links are asked
    # for a little further ahead (chunks 6 to 8), and no further.
    workspace.warehouse.chunk_rows = 10
    held = workspace.warehouse.held_chunks[2] = threading.Event()
    _, client = gateway(prefetch_chunks=4)
    lines: list = []
    reader = threading.Thread(target=lambda: lines.extend(ndjson(client, MANY.format(n=200))))
    reader.start()
    try:
        wait_until(lambda: 5 in fetched(workspace) and 8 in asked(workspace))
        assert max(fetched(workspace)) == 5
        assert max(asked(workspace)) == 8
    finally:
        held.set()
        reader.join(60)  # a hang guard
    assert [row[0] for row in lines[1:-1]] == list(range(200))
    assert sorted(fetched(workspace)) == list(range(20))  # each chunk fetched once


def fetched(workspace) -> list[int]:
    return [n for _, n, _ in workspace.warehouse.link_fetches]


def asked(workspace) -> list[int]:
    """The chunks whose result (links) the warehouse was asked for, in every statement."""
    return [n for s in list(workspace.warehouse.statements.values()) for n in s.fetched_chunks]


def execute_on_the_fake(workspace: Any, statement: str, **body: str) -> dict[str, Any]:
    """The fake's answer to a statement submitted straight to it (waiting up to 5 s)."""
    response = httpx.post(
        f"{workspace.url}/api/2.0/sql/statements/",
        json={
            "statement": statement,
            "warehouse_id": DEMO.warehouse_id,
            "wait_timeout": "5s",
            **body,
        },
        headers={"Authorization": f"Bearer {DEMO.service_token}"},
    )
    answer: dict[str, Any] = response.json()
    return answer
