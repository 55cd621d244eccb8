"""Where a call's CPU goes in a server's event-loop thread, by layer: py-spy's samples of the
thread, sorted by the file of the innermost Python frame each was taken in.

py-spy (a dev dependency) samples the process from outside without pausing it
(`--nonblocking`). Time in C is counted in the Python frame that called it: a socket write in
the frame that called `transport.write`, orjson in the frame that called it. uvloop's own loop
(polling, socket reads, dispatching callbacks) runs under `asyncio.Runner.run`. py-spy counts
a thread that waits runnable for a CPU as busy, in the frame it was preempted in (often the
socket write that woke the process it called): the run reports beside the samples what the
kernel counted for the thread over the same calls (`/proc/<pid>/schedstat`), on a CPU and
waiting for one.
"""

from __future__ import annotations

import contextlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

RATE_HZ = 1000
EVENT_LOOP = "event loop in C (uvloop: polling, socket reads, callbacks)"
# (layer, files it holds) — the first that matches a frame's file wins.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (EVENT_LOOP, ("asyncio/runners.py",)),
    ("log line (gateway/logs.py, logging)", ("gateway/logs.py", "logging/")),
    (
        "HTTP server (uvicorn, httptools, gateway/serve.py; its socket writes)",
        ("uvicorn/", "httptools/", "gateway/serve.py", "email/"),
    ),
    (
        "HTTP client to Databricks (aiohttp, yarl, multidict; its socket writes)",
        ("aiohttp/", "yarl/", "multidict/", "aiohappyeyeballs/"),
    ),
    (
        "typed results and validation (pydantic, the SDK's dataclasses)",
        ("pydantic/", "pydantic_core/", "databricks/sdk/"),
    ),
    ("metrics (prometheus_client)", ("prometheus_client/",)),
    (
        "asyncio and anyio in Python (tasks, futures, timeouts, limiters)",
        ("asyncio/", "anyio/", "weakref.py", "_weakrefset.py"),
    ),
    ("the gateway's other code", ("gateway/",)),
    ("the relay's own code", ("relay.py",)),
)
OTHER = "other"
_FRAME_FILE = re.compile(r"\(([^()]*?):\d+\)$")


@dataclass
class Samples:
    """Samples of a server's main thread, by layer, over `calls` calls."""

    by_layer: Counter[str] = field(default_factory=Counter)
    by_gateway_file: Counter[str] = field(default_factory=Counter)  # gateway/*.py, any layer
    calls: int = 0
    # The kernel's count per call, one entry per block of calls (the blocks are the same size):
    # the thread on a CPU, and waiting runnable for one.
    kernel_cpu_us: list[float] = field(default_factory=list)
    kernel_wait_us: list[float] = field(default_factory=list)

    def per_call_us(self, counts: Counter[str] | None = None) -> dict[str, float]:
        """µs per call by layer (or by the keys of `counts`), as sampled."""
        counts = self.by_layer if counts is None else counts
        return {name: n / RATE_HZ / self.calls * 1e6 for name, n in counts.most_common()}

    def kernel_us(self) -> tuple[float, float]:
        """µs per call on a CPU, and waiting for one."""
        return statistics.fmean(self.kernel_cpu_us), statistics.fmean(self.kernel_wait_us)


def py_spy() -> str | None:
    path = Path(sys.executable).parent / "py-spy"
    return str(path) if path.exists() else None


@contextlib.contextmanager
def sampling(pid: int, into: Samples) -> Iterator[None]:
    """py-spy on `pid` while the block runs; its main thread's samples are added to `into`."""
    spy = py_spy()
    if spy is None:
        raise RuntimeError("py-spy is not installed (scripts/bootstrap.sh dev installs it)")
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        command = [spy, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--threads"]
        command += ["--nonblocking", "--format", "raw", "--output", out.name]
        recorder = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            yield
        finally:
            recorder.send_signal(signal.SIGINT)
            _, said = recorder.communicate(timeout=60)
        raw = Path(out.name).read_text()
        if recorder.returncode not in (0, -signal.SIGINT) or not raw.strip():
            last = said.strip().splitlines()[:1] or [f"exit status {recorder.returncode}"]
            raise RuntimeError(f"py-spy took no samples: {last[0][:300]}")
        add_samples(raw, into)


def add_samples(raw: str, into: Samples) -> None:
    """py-spy's raw output (`thread;frame;…;frame count` per line, outermost first): the main
    thread's samples, counted by the layer of their innermost frame (and by its file when that
    is one of the gateway's)."""
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not frames[0].endswith("MainThread"):
            continue
        path = file_of(frames[-1])
        into.by_layer[layer_of(path)] += int(count)
        if (start := path.find("gateway/")) >= 0:
            into.by_gateway_file[path[start:]] += int(count)


def file_of(frame: str) -> str:
    match = _FRAME_FILE.search(frame)
    return match[1] if match else ""


def layer_of(path: str) -> str:
    for name, files in LAYERS:
        if any(path.startswith(f) or f"/{f}" in path for f in files):
            return name
    return OTHER
