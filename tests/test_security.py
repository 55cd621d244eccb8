"""Secret hygiene and fuzzing: no token or secret anywhere; no input makes a 500 or a hang."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.ops import ALL_OPS
from gateway.registry import Op, Registry
from gateway.testing import DEMO, Fault
from tests.support import run, wait_until

SECRET = "gw-secret-5f1c9a7e"
USER_TOKEN = "dapi-user-token-7d3b2e"
BAD_TOKEN = "dapi-forged-token-9a8b7c"


def test_no_token_or_secret_reaches_a_log_line_or_a_response(gateway, workspace, caplog):
    workspace.add_user(USER_TOKEN, "dana@example.com")
    caplog.set_level(logging.DEBUG)  # every logger, the SDK's and uvicorn's included
    server, client = gateway(
        auth_mode="auto",
        secret=SECRET,
        databricks_token=DEMO.service_token,
        sdk_retry_timeout_seconds=1,
    )
    user = {"X-Databricks-Token": USER_TOKEN}
    bad = {"X-Databricks-Token": BAD_TOKEN}
    responses = [
        run(client, "me", headers=user),
        run(client, "list_catalogs"),
        run(client, "list_schemas", headers=user, catalog="finance"),
        run(client, "list_schemas", headers=user, catalog="ghost"),
        run(client, "me", headers=bad),
        run(client, "list_catalogs", headers=bad),
        run(client, "me", headers={"X-Databricks-Token": ""}),
        run(client, "nope", headers=user),
        run(client, "run_query", headers=user, statement="SELECT :t AS t", parameters={"t": "x"}),
        run(client, "run_query", headers=user, statement="SELECT * FROM missing"),
        run(client, "read_file", headers=user, path="/Volumes/main/app/files/none.txt"),
        run(client, "write_file", headers=user, path="/Volumes/main/app/files/../x", content="x"),
        httpx.post(
            f"{server.url}/run", json={"op": "me"}, headers={"X-Gateway-Secret": SECRET + "x"}
        ),
        httpx.post(f"{server.url}/run", json={"op": "me"}),
        client.get("/ready", params={"deep": 1}),
        client.get("/ops"),
    ]
    for status in (429, 500, 503):
        workspace.inject(Fault(path="/Me", status=status, times=None))
        responses.append(run(client, "me", headers=user))
        workspace.clear_faults()
    workspace.inject(Fault(path="/Me", drop=True, times=None))
    responses.append(run(client, "me", headers=user))
    workspace.clear_faults()
    statuses = {r.status_code for r in responses}
    assert {200, 400, 401, 403, 404, 429, 502, 503} <= statuses
    # Each request's log line is written just after its response: scan them all, not most.
    sent = {r.headers["x-request-id"] for r in responses}
    wait_until(lambda: sent <= {getattr(r, "request_id", None) for r in caplog.records})
    visible = "\n".join(
        [r.text + str(dict(r.headers)) for r in responses]
        + [r.getMessage() + str(vars(r)) for r in caplog.records]
    )
    for secret in (SECRET, USER_TOKEN, BAD_TOKEN, DEMO.service_token):
        assert secret not in visible, f"{secret} leaked"


REGISTRY = Registry(ALL_OPS)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
# Paths inside the allowed root, beside it, and trying to climb out of it.
volume_paths = st.builds(
    "".join,
    st.tuples(
        st.sampled_from(
            ["/Volumes/main/app/files/", "/Volumes/main/app/", "/Volumes/demo/x/y/", "../", ""]
        ),
        st.text(max_size=12),
    ),
)


def from_schema(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that fit a params JSON schema (as the registry derives them), roughly."""
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    if "anyOf" in schema:
        return st.one_of([from_schema(s, defs) for s in schema["anyOf"]])
    if "const" in schema or "enum" in schema:
        return st.sampled_from(schema.get("enum", [schema.get("const")]))
    kind = schema.get("type")
    if kind == "string":
        pattern = schema.get("pattern")
        return st.from_regex(pattern, fullmatch=True) if pattern else st.text(max_size=30)
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        return st.floats(
            low,
            schema.get("maximum"),
            exclude_min="exclusiveMinimum" in schema,
            allow_nan=False,  # JSON has neither; the client could not even send them
            allow_infinity=False,
        )
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), defs), max_size=3)
    if kind == "object":
        return object_of(schema, defs)
    simple = {"boolean": st.booleans(), "null": st.none()}
    return simple.get(kind or "", json_values)


def object_of(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    properties = schema.get("properties")
    if not properties and schema.get("additionalProperties") is False:
        return st.just({})
    if not properties:
        values = schema.get("additionalProperties")
        values = from_schema(values, defs) if isinstance(values, dict) else json_values
        return st.dictionaries(st.text(max_size=8), values, max_size=3)
    fields = {
        name: volume_paths if name == "path" else from_schema(sub, defs)
        for name, sub in properties.items()
    }
    required = set(schema.get("required", []))
    return st.fixed_dictionaries(
        {k: v for k, v in fields.items() if k in required},
        optional={k: v for k, v in fields.items() if k not in required},
    )


def well_typed(op: Op) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies of one op whose params fit its schema: they get past validation, into the op."""
    schema = op.describe()["params"]
    return object_of(schema, schema.get("$defs", {})).map(lambda p: {**p, "op": op.name})


op_names = st.sampled_from(REGISTRY.names())
param_names = st.sampled_from(
    [*sorted({p for op in REGISTRY for p in op.describe()["params"]["properties"]}), "unexpected"]
)
loosely_typed = st.fixed_dictionaries({"op": op_names}).flatmap(
    lambda base: st.dictionaries(param_names, json_values, max_size=4).map(lambda p: {**p, **base})
)
bodies = st.one_of(
    st.one_of([well_typed(op) for op in REGISTRY]),
    loosely_typed,
    st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    json_values,
)


def test_fuzzed_run_bodies_never_500_and_never_escape_the_roots(gateway, workspace):
    _, client = gateway(allowed_roots=["/Volumes/main/app/files"], request_timeout_seconds=10)

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies)
    def check(body: object) -> None:
        response = client.post("/run", json=body)
        if response.status_code >= 400:
            assert response.json()["error"]["code"] != "INTERNAL_ERROR", response.text
        for path in workspace.paths_seen():
            seen = path.split("/api/2.0/fs/", 1)[1].split("/", 1)[1] + "/"
            assert seen.startswith("Volumes/main/app/files/"), path  # the root or below it

    check()


def test_fuzzed_routes_never_500(gateway):
    _, client = gateway(allowed_roots=["/Volumes/main/app/files"], request_timeout_seconds=10)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
        path=st.sampled_from(["/run", "/ops", "/health", "/ready", "/openapi.json", "/x"]),
        query=st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=10), max_size=3),
        content_type=st.sampled_from(
            ["application/json", "application/octet-stream", "text/plain", ""]
        ),
        payload=st.binary(max_size=64),
    )
    def check(method: str, path: str, query: dict, content_type: str, payload: bytes) -> None:
        headers = {"content-type": content_type} if content_type else {}
        response = client.request(method, path, params=query, content=payload, headers=headers)
        if response.status_code >= 500:
            assert response.json()["error"]["code"] != "INTERNAL_ERROR", response.text

    check()
