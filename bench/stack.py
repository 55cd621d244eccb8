"""Processes for the benchmarks: fake workspaces and gateways, each its own OS process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret"
SERVICE_TOKEN = "dapi-local-service"
ALICE = "dapi-local-alice"
EXTRA_USER_TOKEN = "dapi-local-user-{i}"  # the fake's --extra-users tokens

# The databricks-tools-core pattern (a new WorkspaceClient on every get_workspace_client call),
# as a stand-in module, so "client per request" is measured through the gateway's own backend.
TOOLS_CORE_STAND_IN = textwrap.dedent(
    """
    from contextvars import ContextVar
    from databricks.sdk import WorkspaceClient
    _auth = ContextVar("auth", default=(None, None))

    def set_databricks_auth(host, token, *, force_token=False):
        _auth.set((host, token))

    def clear_databricks_auth():
        _auth.set((None, None))

    def get_workspace_client():
        host, token = _auth.get()
        return WorkspaceClient(host=host, token=token, auth_type="pat")
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "GATEWAY_"))}
    env["DATABRICKS_CONFIG_FILE"] = str(ROOT / ".no-databrickscfg")
    return env


def wait_for(url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    """Until GET `url` answers (http://host:port/path, or unix:/socket/path for GET /health)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            if url.startswith("unix:"):
                _get_health_over_unix_socket(url.removeprefix("unix:"))
            else:
                urllib.request.urlopen(url, timeout=1).read()  # noqa: S310 - loopback URL we built
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def _get_health_over_unix_socket(path: str) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(1)
        sock.connect(path)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        if not sock.recv(64).startswith(b"HTTP/1.1 200"):
            raise OSError("not ready")


@dataclass
class Proc:
    process: subprocess.Popen[bytes]
    url: str
    log: Path | None = None  # the gateway's stderr: its shipped one JSON line per request

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        if self.log:
            self.log.unlink(missing_ok=True)


def start_fake(
    latency_ms: float = 0,
    chunk_rows: int = 10_000,
    trips: int = 1000,
    link_latency_ms: float = 0,
    extra_users: int = 0,
    tmpdir: Path | None = None,
) -> Proc:
    """A fake workspace; `tmpdir` is where it keeps its volume files (its TMPDIR)."""
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "gateway.testing",
        "--port",
        str(port),
        "--latency-ms",
        str(latency_ms),
        "--chunk-rows",
        str(chunk_rows),
        "--trips",
        str(trips),
        "--link-latency-ms",
        str(link_latency_ms),
        "--extra-users",
        str(extra_users),
    ]
    env = clean_env()
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{url}/.well-known/databricks-config", process)
    return Proc(process, url)


def gateway_env(fake_url: str, **env: str) -> dict[str, str]:
    """Only what a deployment must say (where, who, which secret); every other setting shipped."""
    return {
        "GATEWAY_SECRET": SECRET,
        "DATABRICKS_HOST": fake_url,
        "DATABRICKS_TOKEN": SERVICE_TOKEN,
        "DATABRICKS_WAREHOUSE_ID": "fakewarehouse0001",
        **env,
    }


def gateway_settings(**env: str) -> dict[str, object]:
    """The settings a gateway started with `env` runs with, as the gateway itself reads them."""
    variables = clean_env()
    variables.update(gateway_env("http://127.0.0.1:1", **env))
    script = (
        "import json; from gateway.settings import Settings; "
        "print(json.dumps(Settings().model_dump(mode='json'), default=str))"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=variables, check=True, capture_output=True
    ).stdout
    settings: dict[str, object] = json.loads(output)
    return {k: v for k, v in settings.items() if k not in {"databricks_host", "port"}}


def start_gateway(fake: Proc, command: list[str] | None = None, **env: str) -> Proc:
    """A gateway on a free TCP port, or on the unix socket GATEWAY_UDS names (url unix:/path).
    `command`: what runs it instead of `python -m gateway` (the ablation's `stripped.py`)."""
    port = free_port()
    variables = clean_env()
    variables.update(GATEWAY_PORT=str(port), **gateway_env(fake.url, **env))
    if variables.get("GATEWAY_AUTH_BACKEND") == "tools-core":
        folder = Path(tempfile.mkdtemp(prefix="tools-core-stand-in-"))
        (folder / "databricks_tools_core").mkdir()
        (folder / "databricks_tools_core" / "__init__.py").write_text("")
        (folder / "databricks_tools_core" / "auth.py").write_text(TOOLS_CORE_STAND_IN)
        variables["PYTHONPATH"] = str(folder)
    log = Path(tempfile.mkstemp(prefix="gateway-bench-", suffix=".log")[1])
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            command or [sys.executable, "-m", "gateway"], cwd=ROOT, env=variables, stderr=stderr
        )
    if "GATEWAY_UDS" in env:
        url = f"unix:{env['GATEWAY_UDS']}"
        wait_for(url, process)
    else:
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{url}/health", process)
    return Proc(process, url, log)


def start_relay(fake: Proc) -> Proc:
    """The bare relay (relay.py) in front of `fake`: the files section's floor."""
    port = free_port()
    args = [sys.executable, str(ROOT / "bench" / "relay.py"), fake.url, SERVICE_TOKEN, str(port)]
    process = subprocess.Popen(args, cwd=ROOT, env=clean_env())
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{url}/health", process)
    return Proc(process, url)


def log_offset(gateway: Proc) -> int:
    return gateway.log.stat().st_size if gateway.log else 0


def main_thread_schedstat(process: Proc) -> tuple[int, int] | None:
    """Nanoseconds the process's main thread (the gateway's event loop) has run on a CPU, and
    waited runnable for one (Linux `/proc/<pid>/schedstat`); None where there is none."""
    try:
        on_cpu, waiting, _ = Path(f"/proc/{process.process.pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return None
    return int(on_cpu), int(waiting)


def run_log_lines(gateway: Proc, since: int) -> list[dict[str, Any]]:
    """Every `/run` request line the gateway logged after byte `since`."""
    if gateway.log is None:
        return []
    with gateway.log.open("rb") as f:
        f.seek(since)
        lines = f.read().splitlines()
    entries = []
    for line in lines:
        if b'"duration_ms"' not in line:
            continue
        entry = json.loads(line)
        if entry.get("path") == "/run":
            entries.append(entry)
    return entries


def server_durations_ms(gateway: Proc, since: int) -> list[float]:
    """`duration_ms` of every `/run` request line the gateway logged after byte `since`."""
    return [float(entry["duration_ms"]) for entry in run_log_lines(gateway, since)]


# Volume files in memory when the machine has a tmpfs: on the development VM the fake's writes
# of a 1 GiB upload to ext4 cost 0.2 to 2.5 CPU-s from one sample to the next, for either side.
MEMORY_FS = Path("/dev/shm")  # noqa: S108 - only a private mkdtemp directory is made in it


@contextmanager
def fake_and_gateway(
    latency_ms: float = 0,
    chunk_rows: int = 10_000,
    link_latency_ms: float = 0,
    files_in_memory: bool = False,
    **env: str,
) -> Iterator[tuple[Proc, Proc]]:
    in_memory = files_in_memory and MEMORY_FS.is_dir()
    tmpdir = Path(tempfile.mkdtemp(prefix="bench-fake-", dir=MEMORY_FS)) if in_memory else None
    fake = start_fake(
        latency_ms=latency_ms,
        chunk_rows=chunk_rows,
        link_latency_ms=link_latency_ms,
        tmpdir=tmpdir,
    )
    try:
        gateway = start_gateway(fake, **env)
        try:
            yield fake, gateway
        finally:
            gateway.stop()
    finally:
        fake.stop()
        if tmpdir is not None:  # the fake removes its files, unless it had to be killed
            shutil.rmtree(tmpdir, ignore_errors=True)


ServersForSample = Callable[..., AbstractContextManager[tuple[Proc, Proc]]]


@contextmanager
def fake_and_gateway_each_sample(
    latency_ms: float, fresh: bool = True
) -> Iterator[tuple[Proc, ServersForSample]]:
    """A fake for the whole section, and a way to start a fresh gateway and bare relay in front
    of it for each sample (`with servers(gateway_first=...) as (gateway, relay)`): where the
    scheduler puts a server against the fake then changes from sample to sample instead of
    holding for the whole run. Not `fresh` (a quick run): one pair serves every sample."""
    fake = start_fake(latency_ms=latency_ms)

    @contextmanager
    def started(gateway_first: bool) -> Iterator[tuple[Proc, Proc]]:
        procs: dict[str, Proc] = {}
        try:
            for name in ("gateway", "relay") if gateway_first else ("relay", "gateway"):
                procs[name] = start_gateway(fake) if name == "gateway" else start_relay(fake)
            yield procs["gateway"], procs["relay"]
        finally:
            for proc in procs.values():
                proc.stop()

    try:
        if fresh:
            yield fake, started
        else:
            with started(gateway_first=True) as pair:

                @contextmanager
                def kept(gateway_first: bool) -> Iterator[tuple[Proc, Proc]]:
                    yield pair

                yield fake, kept
    finally:
        fake.stop()


@dataclass
class PeakRss:
    """Samples a process's resident memory every 20 ms while active."""

    pid: int
    baseline: int = 0
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> PeakRss:
        process = psutil.Process(self.pid)
        self.baseline = self.peak = process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, args=(process,), daemon=True)
        self._thread.start()
        return self

    def _sample(self, process: psutil.Process) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.baseline) / 1024**2
