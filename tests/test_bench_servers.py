"""The servers the bench measures the gateway against: the bare relay (bench/relay.py) sends the
lean path's very requests, so the fake's share of a call is the same on both; and the ablation's
stripped gateways (bench/stripped.py) still answer, so a layer's replacement that no longer fits
the gateway's code fails here, not in a benchmark run. The report is tested with the rest of
RESULTS.md's (test_bench_report.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.testing import DEMO
from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
SECRET = "ablation-test-secret"


def test_the_bare_relay_sends_the_requests_the_lean_path_sends(workspace, gateway):
    _, client = gateway(lean_upstream=True)
    workspace.requests.clear()
    for op in ("me", "list_catalogs"):  # the test fake's pages hold 2 catalogs: page tokens too
        assert client.post("/run", json={"op": op}).status_code == 200
    sent_by_gateway = requests_to_the_api(workspace)
    port = free_port()
    relay = [sys.executable, str(ROOT / "bench" / "relay.py")]
    relay += [workspace.url, DEMO.service_token, str(port)]
    with running(relay, environment()) as process:
        workspace.requests.clear()
        for op in ("me", "list_catalogs"):
            assert post_when_up(f"http://127.0.0.1:{port}/run", op, process).status_code == 200
    assert len(sent_by_gateway) > 2
    assert requests_to_the_api(workspace) == sent_by_gateway


def requests_to_the_api(workspace: Any) -> list[tuple[Any, ...]]:
    return [
        (r.method, r.path, r.query, r.authorization, r.user_agent)
        for r in workspace.requests
        if r.path.startswith("/api/")
    ]


@pytest.mark.parametrize(
    "layers", [["typing", "deadline"], ["typing", "deadline", "context", "dispatch"]]
)
def test_a_stripped_gateway_lists_the_catalogs_the_gateway_lists(workspace, gateway, layers):
    _, client = gateway()
    shipped = client.post("/run", json={"op": "list_catalogs"}).json()["result"]
    port = free_port()
    env = environment(
        GATEWAY_PORT=str(port),
        GATEWAY_SECRET=SECRET,
        DATABRICKS_HOST=workspace.url,
        DATABRICKS_TOKEN=DEMO.service_token,
    )
    with running([sys.executable, str(ROOT / "bench" / "stripped.py"), *layers], env) as process:
        answer = post_when_up(f"http://127.0.0.1:{port}/run", "list_catalogs", process)
    assert answer.status_code == 200
    stripped = answer.json()["result"]
    # Without typing the items are the API's JSON: more keys, the same catalogs.
    assert [c["name"] for c in stripped] == [c["name"] for c in shipped]
    assert len(stripped[0]) > len(shipped[0])


def environment(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "GATEWAY_"))}
    env["DATABRICKS_CONFIG_FILE"] = os.environ["DATABRICKS_CONFIG_FILE"]
    return {**env, **variables}


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def post_when_up(url: str, op: str, process: subprocess.Popen[bytes]) -> httpx.Response:
    answers: list[httpx.Response] = []

    def answered() -> bool:
        assert process.poll() is None, "the server exited"
        try:
            body = {"op": op}
            answers.append(httpx.post(url, json=body, headers={"X-Gateway-Secret": SECRET}))
        except httpx.TransportError:
            return False
        return True

    wait_until(answered, guard_seconds=90)  # a hang guard: a loaded machine starts slowly
    return answers[0]
