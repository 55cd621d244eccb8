"""Request-scoped identity: modes, the caller secret, service identities, isolation, caching."""

from __future__ import annotations

import asyncio
import sys
import types

import httpx
import pytest
from pydantic import ValidationError

from gateway import auth
from gateway.auth import Identity, SdkBackend, ToolsCoreBackend
from gateway.settings import Settings
from gateway.testing import DEMO
from tests.support import planted, run

PROBE = "/.well-known/databricks-config"
ALICE = {"X-Databricks-Token": DEMO.alice_token}
BOB = {"X-Databricks-Token": DEMO.bob_token}


def user_name(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["result"]["user_name"]


# --- the caller secret ---------------------------------------------------------------------------


def test_secret_is_required_on_every_route_but_health(gateway):
    server, _ = gateway(secret="s3cret-value")
    bare = httpx.Client(base_url=server.url)
    assert bare.get("/health").status_code == 200
    for method, path in [
        ("POST", "/run"),
        ("GET", "/ops"),
        ("GET", "/ready"),
        ("GET", "/openapi.json"),
    ]:
        response = bare.request(method, path, json={"op": "me"})
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "GATEWAY_UNAUTHORIZED"
    wrong = bare.post("/run", json={"op": "me"}, headers={"X-Gateway-Secret": "s3cret-valuf"})
    assert wrong.status_code == 401
    assert "s3cret" not in wrong.text


@pytest.mark.parametrize("header", ["X-Gateway-Secret", "X-Databricks-Token", "X-Databricks-Host"])
def test_a_security_header_sent_twice_is_400_never_first_one_wins(gateway, header):
    server, _ = gateway(secret="s3cret-value", auth_mode="auto")
    values = {
        "X-Gateway-Secret": ["s3cret-value", "s3cret-value"],
        "X-Databricks-Token": [DEMO.alice_token, DEMO.bob_token],
        "X-Databricks-Host": [server.url, server.url],
    }[header]
    headers = [("X-Gateway-Secret", "s3cret-value")] if header != "X-Gateway-Secret" else []
    headers += [(header, value) for value in values]
    with httpx.Client(base_url=server.url) as bare:
        response = bare.post("/run", json={"op": "me"}, headers=headers)
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (400, "DUPLICATE_HEADER")
    assert header.lower() in error["message"]
    assert DEMO.alice_token not in response.text


def test_secret_accepted(gateway):
    _, client = gateway(secret="s3cret-value")  # the client sends it
    assert user_name(run(client, "me")) == "gateway-service@example.com"


def test_non_loopback_host_without_secret_refuses_to_start():
    with pytest.raises(ValidationError, match="GATEWAY_SECRET is required"):
        Settings(host="0.0.0.0", databricks_host="https://x")
    assert Settings(host="0.0.0.0", secret="x").host == "0.0.0.0"
    assert Settings(host="127.0.0.1").secret is None
    with pytest.raises(ValidationError, match="GATEWAY_SECRET is required"):
        Settings(host="0.0.0.0", secret="  ")  # empty means unset, not "the empty secret"


# --- auth modes ------------------------------------------------------------------------------


def test_service_mode_rejects_user_tokens(gateway):
    _, client = gateway(auth_mode="service")
    error = run(client, "me", headers=ALICE).json()["error"]
    assert (error["status"], error["code"]) == (400, "USER_TOKEN_NOT_ALLOWED")


def test_user_mode_requires_a_token(gateway, workspace):
    _, client = gateway(auth_mode="user")
    workspace.requests.clear()
    error = run(client, "me").json()["error"]
    assert (error["status"], error["code"]) == (401, "USER_TOKEN_REQUIRED")
    assert workspace.requests == []
    assert user_name(run(client, "me", headers=ALICE)) == "alice@example.com"


def test_auto_mode_uses_the_token_when_present(gateway):
    _, client = gateway(auth_mode="auto")
    assert user_name(run(client, "me", headers=BOB)) == "bob@example.com"
    assert user_name(run(client, "me")) == "gateway-service@example.com"


@pytest.mark.parametrize("mode", ["user", "auto"])
def test_empty_token_never_falls_back_to_the_service_identity(gateway, workspace, mode):
    _, client = gateway(auth_mode=mode)
    workspace.requests.clear()
    for empty in [""]:  # (HTTP clients refuse whitespace-only header values)
        response = run(client, "me", headers={"X-Databricks-Token": empty})
        assert response.status_code == 401
    assert workspace.requests == []


@pytest.mark.parametrize("mode", ["user", "auto"])
def test_bad_user_token_fails_closed(gateway, workspace, mode):
    _, client = gateway(auth_mode=mode)
    response = run(client, "list_catalogs", headers={"X-Databricks-Token": "dapi-forged"})
    assert response.status_code == 403
    body = response.json()["error"]
    assert body["databricks_error_code"] == "403"
    assert "dapi-forged" not in response.text
    me_calls = [r for r in workspace.requests if r.path.endswith("/catalogs")]
    assert me_calls and all(r.authorization == "Bearer dapi-forged" for r in me_calls)


def test_request_chosen_host_must_be_allowed(gateway, workspace):
    _, client = gateway(auth_mode="auto", allowed_hosts=[workspace.url])
    other = {**ALICE, "X-Databricks-Host": "https://evil.example.com"}
    assert run(client, "me", headers=other).json()["error"]["code"] == "HOST_NOT_ALLOWED"
    allowed = {**ALICE, "X-Databricks-Host": workspace.url}
    assert user_name(run(client, "me", headers=allowed)) == "alice@example.com"


def test_service_credentials_never_go_to_a_request_chosen_host(gateway, workspace):
    _, client = gateway(auth_mode="auto", allowed_hosts=[workspace.url])
    response = run(client, "me", headers={"X-Databricks-Host": workspace.url})
    assert response.json()["error"]["code"] == "HOST_NEEDS_USER_TOKEN"


# --- service identities ----------------------------------------------------------------------


def test_oauth_m2m_service_identity_end_to_end(gateway, workspace):
    _, client = gateway(
        databricks_token=None, client_id=DEMO.client_id, client_secret=DEMO.client_secret
    )
    assert user_name(run(client, "me")) == DEMO.client_id
    paths = [r.path for r in workspace.requests]
    assert "/oidc/v1/token" in paths
    assert paths.count("/oidc/v1/token") == 1  # token reused across calls
    run(client, "list_catalogs")
    assert [r.path for r in workspace.requests].count("/oidc/v1/token") == 1


def test_oauth_m2m_with_a_wrong_secret_is_an_auth_error(gateway):
    _, client = gateway(databricks_token=None, client_id=DEMO.client_id, client_secret="wrong")
    response = run(client, "me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "DATABRICKS_UNAUTHENTICATED"
    assert "wrong" not in response.text


def test_no_service_identity_is_a_clear_503(gateway):
    _, client = gateway(databricks_token=None)
    error = run(client, "me").json()["error"]
    assert (error["status"], error["code"]) == (503, "NOT_CONFIGURED")


# --- isolation and caching -------------------------------------------------------------------


def test_interleaved_identities_see_only_their_own_user_and_catalogs(gateway):
    server, _ = gateway(auth_mode="auto", thread_limit=16)
    expected = {
        "alice": ("alice@example.com", True),
        "bob": ("bob@example.com", False),
        "service": ("gateway-service@example.com", False),
    }
    headers = {"alice": ALICE, "bob": BOB, "service": {}}

    async def one(http: httpx.AsyncClient, i: int) -> tuple[str, str, httpx.Response]:
        who = ["alice", "bob", "service"][i % 3]
        op = "me" if i % 2 else "list_catalogs"
        return who, op, await http.post("/run", json={"op": op}, headers=headers[who])

    async def main() -> list[tuple[str, str, httpx.Response]]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as http:
            return await asyncio.gather(*(one(http, i) for i in range(240)))

    results = asyncio.run(main())
    for who, op, response in results:
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        if op == "me":
            assert result["user_name"] == expected[who][0]
        else:
            assert ("finance" in {c["name"] for c in result}) is expected[who][1]
    assert server.runtime.backend.cached_user_clients == 2


def test_client_cache_is_bounded(gateway, workspace):
    _, client = gateway(auth_mode="user", client_cache_size=3)
    tokens = [f"dapi-extra-{i}" for i in range(6)]

    def me_builds_a_client(i: int) -> bool:
        # Every client the SDK builds first reads the host's metadata: that is a cache miss.
        before = workspace.paths_seen(PROBE)
        response = run(client, "me", headers={"X-Databricks-Token": tokens[i]})
        assert user_name(response) == f"user{i}@example.com"
        return len(workspace.paths_seen(PROBE)) > len(before)

    for i, token in enumerate(tokens):
        workspace.add_user(token, f"user{i}@example.com")
        assert me_builds_a_client(i)
    assert not any(me_builds_a_client(i) for i in (3, 4, 5))  # the last three are kept
    assert me_builds_a_client(0)  # the first was evicted


def test_known_identity_reuses_its_client(workspace):
    backend = SdkBackend(Settings(databricks_host=workspace.url, auth_mode="user"))
    alice = Identity("user", workspace.url, DEMO.alice_token)
    first = backend.client(alice)
    assert backend.client(Identity("user", workspace.url, DEMO.alice_token)) is first
    assert backend.client(Identity("user", workspace.url, DEMO.bob_token)) is not first


def test_identity_repr_hides_the_token():
    assert "secret-token" not in repr(Identity("user", "https://h", "secret-token"))


def test_clear_runs_when_the_handler_raises(gateway):
    server, client = gateway(auth_mode="auto")
    seen: list[object] = []

    async def explode(runtime: object) -> None:  # `me`'s signature: async, given the runtime
        seen.append(auth.current_identity())
        raise RuntimeError("boom")

    with planted(server, "me", explode):
        assert run(client, "me", headers=ALICE).status_code == 500
    assert seen and seen[0].kind == "user"
    # The next caller without a token is the service, not the identity the failed request set.
    catalogs = run(client, "list_catalogs").json()["result"]
    assert "finance" not in {c["name"] for c in catalogs}  # alice's catalog


# --- the optional tools-core backend --------------------------------------------------------


def test_tools_core_backend_contract(tools_core, gateway):
    _, client = gateway(auth_backend="tools-core", auth_mode="auto")
    module = sys.modules["databricks_tools_core.auth"]
    assert user_name(run(client, "me", headers=ALICE)) == "alice@example.com"
    assert module.calls[0] == ("set", module.HOST, DEMO.alice_token, True)
    assert module.calls[-1] == ("clear",)
    module.calls.clear()
    assert user_name(run(client, "me")) == "gateway-service@example.com"
    assert module.calls == [("clear",)]  # the service identity keeps the gateway's own client


def test_tools_core_clear_runs_on_error(tools_core, gateway):
    server, client = gateway(auth_backend="tools-core", auth_mode="user")
    module = sys.modules["databricks_tools_core.auth"]
    with planted(server, "me", lambda: 1 / 0):
        assert run(client, "me", headers=ALICE).status_code == 500
    assert module.calls[-1] == ("clear",)


def test_tools_core_missing_is_a_clear_startup_error():
    with pytest.raises(RuntimeError, match="databricks-tools-core is not installed"):
        ToolsCoreBackend(Settings(), module_name="databricks_tools_core_absent.auth")


def test_a_tools_core_without_force_token_is_refused_naming_the_version_needed(tmp_path):
    # The unmerged branch once pinned: set_databricks_auth(host, token) with no force_token.
    module = types.ModuleType("old_tools_core_auth")

    def set_databricks_auth(host, token):
        pass

    module.set_databricks_auth = set_databricks_auth  # type: ignore[attr-defined]
    module.clear_databricks_auth = lambda: None  # type: ignore[attr-defined]
    module.get_workspace_client = lambda: None  # type: ignore[attr-defined]
    sys.modules["old_tools_core_auth"] = module
    try:
        with pytest.raises(RuntimeError) as raised:
            ToolsCoreBackend(Settings(), module_name="old_tools_core_auth")
    finally:
        del sys.modules["old_tools_core_auth"]
    message = str(raised.value)
    assert "force_token" in message and "b253942" in message
    assert "set_databricks_auth(host, token)" in message


@pytest.mark.parametrize("mode", ["service", "user", "auto"])
def test_installed_tools_core_in_every_mode(installed_tools_core, gateway, mode):
    _, client = gateway(auth_backend="tools-core", auth_mode=mode)
    if mode != "user":
        assert user_name(run(client, "me")) == "gateway-service@example.com"
    if mode != "service":
        assert user_name(run(client, "me", headers=ALICE)) == "alice@example.com"
        assert user_name(run(client, "me", headers=BOB)) == "bob@example.com"
        bad = run(client, "me", headers={"X-Databricks-Token": "dapi-nobody"})
        assert bad.status_code in (401, 403)  # never the service identity
