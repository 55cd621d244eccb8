"""Unity Catalog ops through the gateway, the real SDK and the fake."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

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
    assert names(run(client, "list_schemas", catalog="main")) == ["app", "default"]
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
