from __future__ import annotations

import importlib.util
import os
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from gateway.testing import FakeWorkspace, seed_demo
from tests.support import GatewayServer, running_gateway, settings_for


@pytest.fixture(autouse=True)
def clean_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No DATABRICKS_*/GATEWAY_*/OTEL_* variable or config file of the machine may leak into a
    test."""
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "GATEWAY_", "OTEL_")):
            monkeypatch.delenv(name)
    missing = tmp_path_factory.mktemp("cfg") / "missing.databrickscfg"
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(missing))


@pytest.fixture
def workspace() -> Iterator[FakeWorkspace]:
    ws = FakeWorkspace(page_size=2)
    seed_demo(ws, trips=200)
    ws.start()
    try:
        yield ws
    finally:
        ws.stop()


TOOLS_CORE_STAND_IN = textwrap.dedent(
    """
    from contextvars import ContextVar
    calls = []
    _token = ContextVar("token", default=None)

    def set_databricks_auth(host, token, *, force_token=False):
        calls.append(("set", host, token, force_token))
        _token.set(token)

    def clear_databricks_auth():
        calls.append(("clear",))
        _token.set(None)

    def get_workspace_client():
        from databricks.sdk import WorkspaceClient
        calls.append(("get", _token.get()))
        return WorkspaceClient(host=HOST, token=_token.get(), auth_type="pat")
    """
)


@pytest.fixture
def tools_core(tmp_path, monkeypatch, workspace):
    """A stand-in databricks_tools_core.auth with its contract (and its new-client-per-call)."""
    package = tmp_path / "databricks_tools_core"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "auth.py").write_text(f"HOST = {workspace.url!r}\n" + TOOLS_CORE_STAND_IN)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [m for m in sys.modules if m.startswith("databricks_tools_core")]:
        del sys.modules[name]


@pytest.fixture
def installed_tools_core(workspace):
    """The real databricks-tools-core, when installed (CI without it says so in its summary)."""
    if importlib.util.find_spec("databricks_tools_core") is None:
        pytest.skip(
            "databricks-tools-core is not installed: the real-package tests did not run "
            "(README 'Optional tools-core backend' shows the local install); the stand-in did"
        )
    yield
    for name in [m for m in sys.modules if m.startswith("databricks_tools_core")]:
        del sys.modules[name]


GatewayFactory = Callable[..., tuple[GatewayServer, httpx.Client]]


@pytest.fixture
def gateway(workspace: FakeWorkspace) -> Iterator[GatewayFactory]:
    """`gateway(**settings)` starts a gateway against the fake and returns (server, client)."""
    stack: list[Any] = []

    def start(**overrides: Any) -> tuple[GatewayServer, httpx.Client]:
        context = running_gateway(settings_for(workspace, **overrides))
        stack.append(context)
        return context.__enter__()

    yield start
    for context in reversed(stack):
        context.__exit__(None, None, None)
