from __future__ import annotations

import os
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
    """No DATABRICKS_*/GATEWAY_* variable or config file of the machine may leak into a test."""
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "GATEWAY_")):
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
