"""The HTTP contract of /run, /ops, /health, /ready and /openapi.json."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.support import planted, run, wait_until


def test_health_is_static_and_never_calls_databricks(gateway, workspace):
    _, client = gateway()
    workspace.requests.clear()
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": "0.1.0"}
    assert workspace.requests == []  # liveness never calls Databricks


def test_ready_and_deep_ready(gateway, workspace):
    _, client = gateway()
    assert client.get("/ready").json()["status"] == "ready"
    workspace.requests.clear()
    assert client.get("/ready", params={"deep": 1}).status_code == 200
    assert any(r.path.endswith("/scim/v2/Me") for r in workspace.requests)


def test_ready_fails_with_a_reason_when_databricks_rejects_the_service_identity(gateway):
    _, client = gateway(databricks_token="dapi-unknown")
    response = client.get("/ready", params={"deep": 1})
    assert response.status_code == 503
    assert response.json()["status"] == "not_ready"
    assert "dapi-unknown" not in response.text


def test_ready_names_an_unreachable_host_and_the_cause(gateway):
    _, client = gateway(databricks_host="http://127.0.0.1:9")
    response = client.get("/ready", timeout=30)  # a hang guard; the probe takes ~ms here
    assert response.status_code == 503
    reason = response.json()["reason"]
    assert "http://127.0.0.1:9" in reason and "refused" in reason


def test_ready_without_host_is_503(gateway):
    _, client = gateway(databricks_host=None)
    response = client.get("/ready")
    assert response.status_code == 503
    assert "DATABRICKS_HOST" in response.json()["reason"]


def test_success_envelope(gateway):
    _, client = gateway()
    response = run(client, "me")
    assert response.status_code == 200
    assert response.json()["result"]["user_name"] == "gateway-service@example.com"


def test_malformed_json_is_400(gateway):
    _, client = gateway()
    response = client.post("/run", content=b'{"op": ', headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_JSON"


def test_non_object_json_is_400(gateway):
    _, client = gateway()
    response = client.post("/run", json=["me"])
    assert response.json()["error"]["code"] == "INVALID_JSON"


def test_unknown_op_names_the_known_ones(gateway):
    _, client = gateway()
    error = run(client, "drop_everything").json()["error"]
    assert error["code"] == "UNKNOWN_OP" and error["status"] == 400
    assert "list_catalogs" in error["message"]
    assert "me" in error["details"]["known_ops"]


def test_missing_op_is_unknown_op(gateway):
    _, client = gateway()
    assert client.post("/run", json={"catalog": "main"}).json()["error"]["code"] == "UNKNOWN_OP"


def test_invalid_params_name_the_field(gateway):
    _, client = gateway()
    error = run(client, "list_schemas", catalog=7).json()["error"]
    assert error["code"] == "INVALID_PARAMS"
    assert "'catalog'" in error["message"]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {"when": {"day": 1}},
            "Invalid parameter 'parameters.when': Input should be a valid boolean, a valid "
            "integer, a valid number or a valid string.",
        ),
        (
            True,
            "Invalid parameter 'parameters': Input should be a valid dictionary or a valid list.",
        ),
        ([{"value": "x"}], "Invalid parameter 'parameters.0.name': Field required."),
    ],
)
def test_a_value_no_member_of_a_union_takes_is_named_as_the_caller_wrote_it(
    gateway, parameters, message
):
    # Not pydantic's places (`parameters.dict[str,nullable[union[...]]].when.bool`): the
    # caller's own path, at the form its value's shape chose, and every type that would do.
    _, client = gateway()
    error = run(client, "run_query", statement="SELECT 1", parameters=parameters).json()["error"]
    assert (error["code"], error["message"]) == ("INVALID_PARAMS", message)


def test_unknown_fields_are_rejected(gateway):
    _, client = gateway()
    error = run(client, "list_catalogs", limit=3).json()["error"]
    assert error["code"] == "INVALID_PARAMS" and "'limit'" in error["message"]


def test_oversize_json_body_is_413_by_declared_length(gateway):
    _, client = gateway(max_json_body_bytes=1024)
    response = run(client, "list_schemas", catalog="x" * 2000)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "BODY_TOO_LARGE"


def test_oversize_chunked_json_body_is_413(gateway):
    _, client = gateway(max_json_body_bytes=1024)

    def chunks():
        yield b'{"op": "me", "pad": "'
        for _ in range(100):
            yield b"x" * 100
        yield b'"}'

    response = client.post("/run", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


@pytest.mark.parametrize(
    "content_type", ["Application/JSON; charset=UTF-8", "application/json;charset=utf-8"]
)
def test_content_type_is_matched_case_insensitively_with_parameters(gateway, content_type):
    _, client = gateway()
    response = client.post("/run", content=b'{"op": "me"}', headers={"content-type": content_type})
    assert response.status_code == 200, response.text


def test_wrong_content_type_is_415(gateway):
    _, client = gateway()
    response = client.post("/run", content=b"op=me", headers={"content-type": "text/plain"})
    assert response.status_code == 415


def test_unknown_route_uses_the_error_envelope(gateway):
    _, client = gateway()
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ROUTE_NOT_FOUND"


def test_request_id_is_kept_when_sane(gateway):
    _, client = gateway()
    response = run(client, "nope", headers={"X-Request-Id": "req-123"})
    assert response.headers["x-request-id"] == "req-123"
    assert response.json()["error"]["request_id"] == "req-123"


def test_request_id_is_replaced_when_insane(gateway):
    _, client = gateway()
    for bad in ["x" * 500, "has space", "é"]:
        response = client.get("/health", headers={"X-Request-Id": bad.encode("utf-8")})
        assert response.headers["x-request-id"] != bad
        assert len(response.headers["x-request-id"]) == 32


def test_ops_lists_every_op_with_schemas(gateway):
    _, client = gateway()
    ops = {op["name"]: op for op in client.get("/ops").json()["ops"]}
    assert {"me", "list_catalogs", "list_schemas", "list_volumes", "ensure_volume"} <= set(ops)
    schemas = ops["list_schemas"]
    assert schemas["params"]["required"] == ["catalog"]
    assert "op" not in schemas["params"]["properties"]
    assert schemas["result"]["type"] == "array"
    assert ops["me"]["description"]


def test_openapi_documents_run_as_a_union_of_ops(gateway):
    _, client = gateway()
    spec = client.get("/openapi.json").json()
    run_schema = spec["components"]["schemas"]["RunRequest"]
    assert set(run_schema["discriminator"]["mapping"]) >= {"me", "list_volumes", "ensure_volume"}
    body = spec["paths"]["/run"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"].endswith("/RunRequest")


def test_one_structured_log_line_per_request(gateway, caplog):
    _, client = gateway()
    caplog.set_level("INFO", logger="gateway")
    run(client, "me", headers={"X-Request-Id": "log-me-1"})

    def lines():
        return [
            r
            for r in caplog.records
            if r.getMessage() == "request" and getattr(r, "request_id", "") == "log-me-1"
        ]

    wait_until(lines)  # written once the response is sent, so possibly just after we read it
    assert len(lines()) == 1
    line = lines()[0]
    assert (line.op, line.identity, line.status) == ("me", "service", 200)
    assert line.duration_ms >= 0


@pytest.mark.parametrize("lean", [True, False], ids=["lean path", "SDK path"])
def test_the_log_line_says_how_long_databricks_took(gateway, workspace, caplog, lean):
    _, client = gateway(lean_upstream=lean)
    caplog.set_level("INFO", logger="gateway")
    workspace.latency = 0.05  # every Databricks call of these requests takes 50 ms or more
    run(client, "me", headers={"X-Request-Id": "slow-me"})
    unknown = client.post("/run", json={"op": "nope"}, headers={"X-Request-Id": "no-call"})
    assert unknown.status_code == 400

    def line(request_id):
        found = [
            r
            for r in caplog.records
            if r.getMessage() == "request" and getattr(r, "request_id", "") == request_id
        ]
        return found[0] if found else None

    wait_until(lambda: line("slow-me") and line("no-call"))
    slow = line("slow-me")
    assert 50 <= slow.upstream_ms <= slow.duration_ms
    assert not hasattr(line("no-call"), "upstream_ms")  # it called nothing


def test_unexpected_errors_are_masked(gateway, caplog):
    server, client = gateway()

    def broken() -> None:
        raise ValueError("secret internals /etc/passwd")

    with planted(server, "me", broken):
        response = run(client, "me")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "INTERNAL_ERROR"
    assert "passwd" not in response.text
    assert any("passwd" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_a_draining_gateway_refuses_new_work_in_the_envelope_but_stays_live():
    import asyncio

    from gateway.middleware import RequestContext

    async def app(scope, receive, send):  # reached only when not draining
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ran"})

    async def call(draining: bool, path: str) -> httpx.Response:
        wrapped = RequestContext(app, secret=None, is_draining=lambda: draining)
        transport = httpx.ASGITransport(app=wrapped)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            return await http.post(path)

    refused = asyncio.run(call(True, "/run"))
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "SHUTTING_DOWN"
    assert refused.headers["connection"] == "close"
    assert asyncio.run(call(True, "/health")).text == "ran"  # liveness answers while draining
    assert asyncio.run(call(False, "/run")).text == "ran"


@pytest.mark.parametrize("kind", ["json", "upload"])
def test_a_client_leaving_mid_body_is_one_499_log_line_not_a_traceback(gateway, caplog, kind):
    server, _ = gateway()
    caplog.set_level("INFO", logger="gateway")
    port = int(server.url.rsplit(":", 1)[1])
    target = (
        "/run?op=write_file&path=/Volumes/main/app/files/gone.bin" if kind == "upload" else "/run"
    )
    content_type = "application/octet-stream" if kind == "upload" else "application/json"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"POST {target} HTTP/1.1\r\nHost: x\r\nX-Request-Id: gone-{kind}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: 100000\r\n\r\n".encode()
        )
        sock.sendall(b'{"op": "me", "pad": "' if kind == "json" else b"y" * 1000)

    def mine():
        return [r for r in caplog.records if getattr(r, "request_id", "") == f"gone-{kind}"]

    wait_until(lambda: any(r.getMessage() == "request" for r in mine()))
    assert [(r.getMessage(), r.status) for r in mine() if r.getMessage() == "request"] == [
        ("request", 499)
    ]
    assert not [r for r in mine() if r.exc_info]  # no traceback
