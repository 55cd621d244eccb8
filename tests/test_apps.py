"""Databricks Apps: what the platform installs, and the app coming up from app.yaml's command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pins(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    return sorted(line for line in lines if re.match(r"[A-Za-z0-9]", line))


def test_requirements_txt_pins_exactly_the_runtime_lock() -> None:
    assert pins(ROOT / "requirements.txt") == pins(ROOT / "requirements.lock")
    assert all("==" in line for line in pins(ROOT / "requirements.txt"))


def test_root_npm_install_installs_both_node_packages_from_their_locks() -> None:
    postinstall = json.loads((ROOT / "package.json").read_text())["scripts"]["postinstall"]
    for folder in ("clients/node", "examples/express-app"):
        assert f"npm ci --omit=dev --no-audit --no-fund --loglevel=error --prefix {folder}" in (
            postinstall
        )
        assert (ROOT / folder / "package-lock.json").is_file()


def test_app_yaml_starts_without_installing() -> None:
    yaml = pytest.importorskip("yaml", reason="pyyaml reads app.yaml")
    command = yaml.safe_load((ROOT / "app.yaml").read_text())["command"]
    assert command == ["bash", "scripts/start.sh", "--no-install"]


@pytest.mark.slow
def test_app_yaml_command_comes_up_in_local_mode() -> None:
    """Part (b) of scripts/simulate-apps.sh, against this venv (the script's (a) makes a new one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "GATEWAY_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        ["bash", "scripts/simulate-apps.sh", "--no-install"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^cold start: [\d.]+ s", result.stdout, re.M), result.stdout
