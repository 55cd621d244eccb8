"""Unity Catalog ops through the gateway, the real SDK and the fake."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from databricks.sdk import WorkspaceClient

from gateway.testing import DEMO
from tests.support import run


def names(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["result"]]


def test_list_catalogs_follows_every_page(gateway, workspace):
    _, client = gateway()
    for i in range(7):
        workspace.add_catalog(f"extra{i}")
    listed = names(run(client, "list_catalogs"))
    assert len(listed) == 3 + 7  # demo, main, samples + extras; the fake pages by 2
    pages = [r for r in workspace.requests if r.path.endswith("/catalogs")]
    assert len(pages) == 5


def test_empty_pages_with_a_token_are_followed(gateway, workspace):
    workspace.empty_first_page = True
    _, client = gateway()
    assert set(names(run(client, "list_catalogs"))) == {"demo", "main", "samples"}


def test_catalog_visibility_follows_the_user(gateway):
    _, client = gateway(auth_mode="user")
    alice = names(run(client, "list_catalogs", headers={"X-Databricks-Token": DEMO.alice_token}))
    bob = names(run(client, "list_catalogs", headers={"X-Databricks-Token": DEMO.bob_token}))
    assert "finance" in alice and "finance" not in bob


def test_list_schemas_and_volumes(gateway):
    _, client = gateway()
    assert names(run(client, "list_schemas", catalog="main")) == [
        "app",
        "default",
        "information_schema",
    ]
    volumes = run(client, "list_volumes", catalog="main", schema="app").json()["result"]
    assert volumes[0]["full_name"] == "main.app.files"
    assert volumes[0]["path"] == "/Volumes/main/app/files"


def test_missing_schema_is_404(gateway):
    _, client = gateway()
    error = run(client, "list_volumes", catalog="main", schema="ghost").json()["error"]
    assert error["status"] == 404 and "main.ghost" in error["message"]


def test_ensure_volume_creates_then_finds(gateway):
    _, client = gateway()
    first = run(client, "ensure_volume", catalog="main", schema="app", name="uploads").json()[
        "result"
    ]
    second = run(client, "ensure_volume", catalog="main", schema="app", name="uploads").json()[
        "result"
    ]
    assert (first["created"], second["created"]) == (True, False)
    assert first["volume"]["full_name"] == second["volume"]["full_name"] == "main.app.uploads"


def test_concurrent_ensures_both_succeed_and_exactly_one_creates(gateway, workspace):
    workspace.create_volume_delay = 0.3  # both reads miss before either create lands
    _, client = gateway()

    def ensure(_: int):
        return run(client, "ensure_volume", catalog="main", schema="app", name="raced")

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(ensure, range(4)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert sum(r.json()["result"]["created"] for r in responses) == 1
    creates = [r for r in workspace.requests if r.method == "POST" and r.path.endswith("/volumes")]
    assert len(creates) == 4


def test_ensure_volume_in_a_missing_catalog_is_404(gateway):
    _, client = gateway()
    error = run(client, "ensure_volume", catalog="ghost", schema="s", name="v").json()["error"]
    assert (error["status"], error["databricks_error_code"]) == (404, "CATALOG_DOES_NOT_EXIST")


def test_external_volume_needs_a_location(gateway):
    _, client = gateway()
    error = run(
        client, "ensure_volume", catalog="main", schema="app", name="ext", volume_type="EXTERNAL"
    ).json()["error"]
    assert error["code"] == "INVALID_PARAMS"


@pytest.mark.parametrize(
    "bad",
    ["a.b", "a/b", "a\\b", "a'b", 'a"b', "a`b", "a\x00b", "a\nb", "", "x" * 300, "a b"],
)
def test_hostile_names_are_rejected_before_databricks(gateway, workspace, bad):
    _, client = gateway()
    workspace.requests.clear()
    response = run(client, "list_schemas", catalog=bad)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_PARAMS"
    assert not [r for r in workspace.requests if "unity-catalog" in r.path]


# --- the warehouse sees the workspace's Unity Catalog ------------------------------------------


def test_every_catalog_has_default_and_information_schema(gateway):
    _, client = gateway()
    for catalog in ("main", "samples", "demo"):
        schemas = names(run(client, "list_schemas", catalog=catalog))
        assert {"default", "information_schema"} <= set(schemas), catalog


def test_schemas_and_tables_created_through_sql_appear_in_unity_catalog(gateway, workspace):
    _, client = gateway()
    for statement in (
        "CREATE SCHEMA demo.staging",
        "CREATE TABLE demo.staging.orders (id BIGINT, total DECIMAL(10,2), note STRING)",
        "CREATE VIEW demo.staging.big AS SELECT * FROM demo.staging.orders WHERE total > 100",
    ):
        assert run(client, "run_query", statement=statement).status_code == 200
    assert "staging" in names(run(client, "list_schemas", catalog="demo"))
    sdk = WorkspaceClient(host=workspace.url, token=DEMO.service_token, auth_type="pat")
    tables = {t.name: t for t in sdk.tables.list(catalog_name="demo", schema_name="staging")}
    assert set(tables) == {"orders", "big"}
    assert tables["orders"].full_name == "demo.staging.orders"
    assert [(c.name, c.type_text) for c in tables["orders"].columns or []] == [
        ("id", "bigint"),
        ("total", "decimal(10,2)"),
        ("note", "string"),
    ]
    assert tables["big"].table_type is not None and tables["big"].table_type.value == "VIEW"


def test_current_user_is_the_caller(gateway):
    _, client = gateway(auth_mode="auto")
    for headers, expected in (
        ({"X-Databricks-Token": DEMO.alice_token}, "alice@example.com"),
        ({}, "gateway-service@example.com"),
    ):
        out = run(
            client,
            "run_query",
            headers=headers,
            statement="SELECT current_user() AS u, 'current_user()' AS literal",
        )
        assert out.json()["result"]["rows"] == [[expected, "current_user()"]]


def test_list_tables_through_the_gateway(gateway):
    _, client = gateway()
    run(client, "run_query", statement="CREATE TABLE demo.shop.returns (id BIGINT, why STRING)")
    tables = run(client, "list_tables", catalog="demo", schema="shop").json()["result"]
    returns = next(t for t in tables if t["name"] == "returns")
    assert returns["full_name"] == "demo.shop.returns"
    assert [(c["name"], c["type_text"]) for c in returns["columns"]] == [
        ("id", "bigint"),
        ("why", "string"),
    ]
    assert {t["name"] for t in tables} >= {"sales", "returns"}
