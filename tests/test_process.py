"""The gateway as a real process (`python -m gateway`): start-up checks and SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from gateway import __main__ as entry
from gateway import startup
from gateway.testing import DEMO
from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
SECRET = "process-test-secret"


def start_gateway(workspace, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    variables = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "GATEWAY_"))
    }
    variables.update(
        GATEWAY_PORT=str(port),
        GATEWAY_SECRET=SECRET,
        DATABRICKS_HOST=workspace.url,
        DATABRICKS_TOKEN=DEMO.service_token,
        DATABRICKS_WAREHOUSE_ID=DEMO.warehouse_id,
        DATABRICKS_CONFIG_FILE=os.environ["DATABRICKS_CONFIG_FILE"],
    )
    variables.update(env)
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway"],
        cwd=ROOT,
        env=variables,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90  # a hang guard: a loaded machine starts Python slowly
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return process, url
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("gateway did not start")


def test_refuses_to_start_off_loopback_without_a_secret(workspace):
    process, _ = start_gateway(workspace, GATEWAY_HOST="0.0.0.0", GATEWAY_SECRET="")
    output = process.communicate(timeout=90)[0].decode()
    assert process.returncode == 2
    assert "GATEWAY_SECRET is required" in output


# The other refusals run `main()` in this process: the same checks and exit code, without
# paying an interpreter start per case (the process test above covers the exit wiring).


@pytest.fixture
def start_in_process(monkeypatch, workspace, caplog, capsys):
    monkeypatch.setattr(startup, "configure", lambda *args: None)  # keep pytest's log capture
    monkeypatch.setattr(entry, "serve", lambda *args: pytest.fail("it went on to serve"))
    monkeypatch.setenv("DATABRICKS_HOST", workspace.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", DEMO.service_token)
    monkeypatch.setenv("GATEWAY_SECRET", SECRET)

    def start(**env: str) -> tuple[int, str]:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        status = entry.main()
        return status, capsys.readouterr().err + caplog.text

    return start


def test_refuses_the_front_server_port(start_in_process):
    port = str(free_port())
    status, output = start_in_process(GATEWAY_PORT=port, DATABRICKS_APP_PORT=port)
    assert status == 2 and "DATABRICKS_APP_PORT" in output


def test_refuses_a_missing_tools_core_backend(start_in_process):
    status, output = start_in_process(GATEWAY_AUTH_BACKEND="tools-core")
    assert status == 2 and "databricks-tools-core is not installed" in output


def envelope(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_sigterm_cancels_the_query_drops_the_upload_and_exits_within_15s(workspace):
    workspace.warehouse.delay_seconds = 60
    process, url = start_gateway(workspace)
    headers = {"X-Gateway-Secret": SECRET}
    target = "/Volumes/main/app/files/in-flight.bin"
    outcomes: list[object] = []

    def long_query() -> None:
        try:
            outcomes.append(
                envelope(
                    httpx.post(
                        f"{url}/run",
                        json={"op": "run_query", "statement": "SELECT 1"},
                        headers=headers,
                        timeout=30,
                    )
                )
            )
        except httpx.HTTPError as exc:
            outcomes.append(type(exc).__name__)

    def endless_upload() -> None:
        def body():
            for _ in range(600):
                yield b"z" * 65536
                time.sleep(0.05)

        try:
            outcomes.append(
                envelope(
                    httpx.post(
                        f"{url}/run",
                        params={"op": "write_file", "path": target},
                        content=body(),
                        headers={**headers, "content-type": "application/octet-stream"},
                        timeout=30,
                    )
                )
            )
        except httpx.HTTPError as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=long_query), threading.Thread(target=endless_upload)]
    for thread in threads:
        thread.start()
    wait_until(
        lambda: (
            workspace.warehouse.statements and any(r.method == "PUT" for r in workspace.requests)
        )
    )
    process.send_signal(signal.SIGTERM)
    process.wait(15)  # a hang guard: the graceful shutdown itself is 5 s (gateway/serve.py)
    for thread in threads:
        thread.join(30)
    statement_id = next(iter(workspace.warehouse.statements))
    assert statement_id in workspace.warehouse.canceled
    wait_until(workspace.uploads_settled)
    assert not workspace.files_root.joinpath("main", "app", "files", "in-flight.bin").exists()
    assert not list(workspace.files_root.glob(".upload-*"))
    # Both callers get the JSON envelope: never uvicorn's plain-text 500 or an empty reply.
    assert outcomes == [(503, "SHUTTING_DOWN"), (503, "SHUTTING_DOWN")]


@pytest.mark.parametrize("roots", ["/etc", "/Volumes/main/../x"])
def test_bad_allowed_roots_stop_the_start(start_in_process, roots):
    status, output = start_in_process(GATEWAY_ALLOWED_ROOTS=roots)
    assert status == 2 and "GATEWAY_ALLOWED_ROOTS" in output


def test_start_without_credentials_warns_once_naming_the_settings(workspace):
    process, _ = start_gateway(workspace, DATABRICKS_TOKEN="")
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=90)[0].decode()
    warnings = [line for line in output.splitlines() if "No Databricks credentials" in line]
    assert len(warnings) == 1
    assert "DATABRICKS_TOKEN" in warnings[0] and "DATABRICKS_CLIENT_ID" in warnings[0]


def test_start_sh_reports_an_unreachable_host_and_keeps_serving(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "GATEWAY_"))}
    gateway_port, front_port = free_port(), free_port()
    env.update(
        DATABRICKS_HOST="http://127.0.0.1:9",
        DATABRICKS_TOKEN="dapi-unreachable",
        DATABRICKS_CONFIG_FILE=os.environ["DATABRICKS_CONFIG_FILE"],
        GATEWAY_PORT=str(gateway_port),
        PORT=str(front_port),
        GATEWAY_VENV=sys.prefix,
        FRONT_COMMAND="sleep 120",
    )
    process = subprocess.Popen(
        ["bash", "scripts/start.sh", "--no-install"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        seen = []
        assert process.stderr is not None
        for raw in process.stderr:  # ends when start.sh stops; the timeout below guards a hang
            seen.append(raw.decode())
            if "NOT READY" in seen[-1] or "front server starting" in seen[-1]:
                break
        line = next((entry for entry in seen if "NOT READY" in entry), "")
        assert "http://127.0.0.1:9" in line and "unreachable" in line, seen
        assert httpx.get(f"http://127.0.0.1:{gateway_port}/health").status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_every_request_line_is_written_whole_before_the_process_ends(workspace, workers):
    # The request lines wait a moment to be written, together (gateway/logs.py); a
    # stopped process must still have written them, whole, one JSON object a line.
    process, url = start_gateway(workspace, GATEWAY_WORKERS=workers)
    headers = {"X-Gateway-Secret": SECRET}
    with httpx.Client(base_url=url, headers=headers) as client:
        ids = [client.post("/run", json={"op": "me"}).headers["x-request-id"] for _ in range(30)]
    process.send_signal(signal.SIGTERM)
    output = process.communicate(timeout=90)[0].decode()
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    logged = [line["request_id"] for line in lines if line.get("path") == "/run"]
    assert sorted(logged) == sorted(ids)
