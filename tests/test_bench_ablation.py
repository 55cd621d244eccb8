"""The bench's ablation: the stripped gateways it measures (bench/stripped.py) still answer, so a
layer's replacement that no longer fits the gateway's code fails here, not in a benchmark run.
Its report is tested with the rest of RESULTS.md's (test_bench_report.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.testing import DEMO
from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
SECRET = "ablation-test-secret"


@pytest.mark.parametrize(
    "layers", [["typing", "deadline"], ["typing", "deadline", "context", "dispatch"]]
)
def test_a_stripped_gateway_lists_the_catalogs_the_gateway_lists(workspace, gateway, layers):
    _, client = gateway()
    shipped = client.post("/run", json={"op": "list_catalogs"}).json()["result"]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "GATEWAY_"))}
    env.update(
        GATEWAY_PORT=str(port),
        GATEWAY_SECRET=SECRET,
        DATABRICKS_HOST=workspace.url,
        DATABRICKS_TOKEN=DEMO.service_token,
        DATABRICKS_CONFIG_FILE=os.environ["DATABRICKS_CONFIG_FILE"],
    )
    command = [sys.executable, str(ROOT / "bench" / "stripped.py"), *layers]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        answer = _post_when_up(f"{url}/run", process)
        assert answer.status_code == 200
        stripped = answer.json()["result"]
        # Without typing the items are the API's JSON: more keys, the same catalogs.
        assert [c["name"] for c in stripped] == [c["name"] for c in shipped]
        assert len(stripped[0]) > len(shipped[0])
    finally:
        process.terminate()
        process.wait(timeout=30)


def _post_when_up(url: str, process: subprocess.Popen[bytes]) -> httpx.Response:
    answers: list[httpx.Response] = []

    def answered() -> bool:
        assert process.poll() is None, "the stripped gateway exited"
        try:
            body = {"op": "list_catalogs"}
            answers.append(httpx.post(url, json=body, headers={"X-Gateway-Secret": SECRET}))
        except httpx.TransportError:
            return False
        return True

    wait_until(answered, guard_seconds=90)  # a hang guard: a loaded machine starts slowly
    return answers[0]
