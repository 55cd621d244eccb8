"""Run a real gateway (uvicorn on a socket) in a background thread for a test."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from gateway.app import create_app
from gateway.serve import server_for
from gateway.settings import Settings
from gateway.testing import DEMO, FakeWorkspace
from gateway.transport import tls_context


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A port for a child process to bind a moment later. Chosen below the kernel's ephemeral
    range: a port from `bind(("", 0))` can be handed to another socket (a test running in
    parallel, an outgoing connection) before the child binds it; a port below the range never
    is, unless some process asks for that very number."""
    floor = _ephemeral_floor()
    for _ in range(200):
        port = random.randrange(10_000, floor)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


class GatewayServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.server = server_for(self.app, settings)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def start(self) -> GatewayServer:
        self.thread.start()
        deadline = time.monotonic() + 60  # a hang guard, generous for a loaded machine
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def settings_for(ws: FakeWorkspace, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "databricks_host": ws.url,
        "databricks_token": DEMO.service_token,
        "sdk_retry_timeout_seconds": 3,
        "sdk_http_timeout_seconds": 3,
        "request_timeout_seconds": 15,
        "warehouse_id": DEMO.warehouse_id,
    }
    values.update(overrides)
    return Settings(**values)


@contextmanager
def running_gateway(settings: Settings) -> Iterator[tuple[GatewayServer, httpx.Client]]:
    server = GatewayServer(settings).start()
    headers = {"X-Gateway-Secret": settings.secret.get_secret_value()} if settings.secret else {}
    try:
        with httpx.Client(
            base_url=server.url, headers=headers, timeout=30, verify=tls_context()
        ) as client:
            yield server, client
    finally:
        server.stop()


@contextmanager
def planted(server: GatewayServer, op_name: str, fn: Any) -> Iterator[None]:
    """Replace an op's function for the duration (a bug planted on purpose). The registry is
    shared by every app of the process, so the original always goes back."""
    op = server.app.state.registry.get(op_name)
    original = op.fn
    object.__setattr__(op, "fn", fn)  # Op is frozen: nothing else may change it
    try:
        yield
    finally:
        object.__setattr__(op, "fn", original)


def run(
    client: httpx.Client, op: str, headers: dict[str, str] | None = None, **params: Any
) -> httpx.Response:
    return client.post("/run", json={"op": op, **params}, headers=headers or {})


def wait_until(condition: Any, guard_seconds: float = 30) -> None:
    """Wait for a condition another thread makes true (a hang guard, not a timing)."""
    tick = threading.Event()
    for _ in range(int(guard_seconds * 20)):
        if condition():
            return
        tick.wait(0.05)
    raise AssertionError("the condition never came true")


def scrape(client: Any) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """GET /metrics, parsed: each sample's value by metric name and (sorted) labels."""
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples
