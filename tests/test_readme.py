"""The README works as written: its marked bash blocks run against `start.sh --local`."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support import free_port

ROOT = Path(__file__).resolve().parent.parent
MARKED_BLOCK = re.compile(r"^<!-- readme-test -->\n```bash\n(.*?)^```$", re.M | re.S)
# Curl as the README calls it, but an HTTP error fails the block (plain `curl -s` exits 0).
STRICT_CURL = 'curl() { command curl --fail-with-body "$@"; }\n'


def marked_blocks() -> list[str]:
    return MARKED_BLOCK.findall((ROOT / "README.md").read_text())


@dataclass
class LocalMode:
    gateway_port: int
    home: Path  # where the README's shell stands: .gateway/secret is under it
    log: Path


# Session scope: under xdist a worker runs other modules' tests between these, and a module
# fixture would start start.sh again each time. (xdist's `--dist loadgroup` would keep them on
# one worker, but with pytest 9 it silently does not: xdist 3.8 renames `item._nodeid`.)
@pytest.fixture(scope="session")
def local_mode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMode]:
    home = tmp_path_factory.mktemp("readme")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "GATEWAY_"))}
    env.update(
        GATEWAY_PORT=str(free_port()),
        GATEWAY_FAKE_PORT=str(free_port()),
        PORT=str(free_port()),
        GATEWAY_AUTH_MODE="auto",
        GATEWAY_SECRET_FILE=str(home / ".gateway" / "secret"),
        GATEWAY_VENV=sys.prefix,
        DATABRICKS_CONFIG_FILE=str(home / "missing.databrickscfg"),
        FRONT_COMMAND="sleep 600",  # the blocks call the gateway; Express is tested elsewhere
    )
    log = home / "start.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            ["bash", "scripts/start.sh", "--local", "--no-install"],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "front server starting" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield LocalMode(int(env["GATEWAY_PORT"]), home, log)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def test_the_readme_has_marked_blocks() -> None:
    assert marked_blocks(), "no <!-- readme-test --> block in README.md"


@pytest.mark.parametrize("index", range(len(marked_blocks())))
def test_readme_block_runs(local_mode: LocalMode, index: int) -> None:
    block = marked_blocks()[index].replace(":8765", f":{local_mode.gateway_port}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "GATEWAY_"))}
    result = subprocess.run(
        ["bash", "-e", "-c", STRICT_CURL + block],
        cwd=local_mode.home,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (
        f"{block}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


def test_start_sh_writes_the_secret_0600_and_never_logs_it(local_mode: LocalMode) -> None:
    secret_file = local_mode.home / ".gateway" / "secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert len(secret) == 64
    log = local_mode.log.read_text()
    assert secret not in log
    assert "export GATEWAY_SECRET=$(cat " in log
    url = f"http://127.0.0.1:{local_mode.gateway_port}/ops"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"X-Gateway-Secret": secret}).status_code == 200
