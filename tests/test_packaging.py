"""Packaging: docker-compose.yml validates on a fresh clone, where there is no `.env`; the
declared minimum versions are what `scripts/test-floors.sh` installs."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"


def compose_cli() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    return docker if probe.returncode == 0 else None


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Path:
    """A directory holding only a copy of docker-compose.yml: no `.env` next to it."""
    shutil.copyfile(COMPOSE, tmp_path / "docker-compose.yml")
    assert not (tmp_path / ".env").exists()
    return tmp_path


def test_compose_config_succeeds_without_env_file(fresh_clone: Path) -> None:
    docker = compose_cli()
    if docker is not None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
        result = subprocess.run(
            [docker, "compose", "-f", "docker-compose.yml", "config", "--quiet"],
            cwd=fresh_clone,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return
    # No compose plugin here: check the file for what makes `config` fail without .env.
    yaml = pytest.importorskip("yaml", reason="neither `docker compose` nor pyyaml is available")
    spec: dict[str, Any] = yaml.safe_load((fresh_clone / "docker-compose.yml").read_text())
    for name, service in spec["services"].items():
        entries = service.get("env_file", [])
        entries = entries if isinstance(entries, list) else [entries]
        for entry in entries:
            assert isinstance(entry, dict) and entry.get("required") is False, (
                f"service {name}: env_file {entry!r} must be {{path: ..., required: false}}"
            )


def test_compose_interpolations_all_have_defaults() -> None:
    """`${VAR}` with no default would warn and pass an empty value on a fresh clone."""
    for match in re.finditer(r"\$\{([^}]*)\}", COMPOSE.read_text()):
        assert re.fullmatch(r"\w+:?-.*", match.group(1)), f"{match.group(0)} has no default"


def test_container_and_apps_listen_on_every_interface() -> None:
    """start.sh defaults the front server to 127.0.0.1; where it must be reachable, say so."""
    assert re.search(r"^ENV FRONT_HOST=0\.0\.0\.0\b", (ROOT / "Dockerfile").read_text(), re.M)
    yaml = pytest.importorskip("yaml", reason="pyyaml reads app.yaml and docker-compose.yml")
    app = yaml.safe_load((ROOT / "app.yaml").read_text())
    assert {"name": "FRONT_HOST", "value": "0.0.0.0"} in app["env"]
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name, service in services.items():
        assert service["environment"].get("FRONT_HOST") == "0.0.0.0", name
    assert 'HOST="${FRONT_HOST:-127.0.0.1}"' in (ROOT / "scripts" / "start.sh").read_text()


def _floors_script() -> Any:
    spec = importlib.util.spec_from_file_location("floors", ROOT / "scripts" / "floors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_floor_pins_the_lowest_version_a_requirement_allows() -> None:
    floors = _floors_script()
    assert floors.floor("uvicorn[standard]>=0.42") == "uvicorn[standard]==0.42"
    assert floors.floor("databricks-sdk>=0.156,<0.200") == "databricks-sdk==0.156"
    with pytest.raises(SystemExit, match="no '>=' floor"):
        floors.floor("fastapi")
    with pytest.raises(SystemExit, match="no '>=' floor"):
        floors.floor("duckdb<2")


def test_the_floors_install_pins_every_dependency_at_its_floor_and_the_lock_is_above_them() -> None:
    floors = _floors_script()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = floors.lock_pins((ROOT / "requirements-dev.lock").read_text())
    pinned = {Requirement(line).name: line for line in floors.pins(project, lock)}
    extras = project["optional-dependencies"]
    for text in [*project["dependencies"], *extras["local"], *extras["otel"]]:
        requirement = Requirement(text)
        low = Version(pinned[requirement.name].split("==")[1])
        assert requirement.specifier.contains(low), text  # the floor is allowed
        assert requirement.specifier.contains(lock[requirement.name]), text  # so is the lock
        assert Version(lock[requirement.name]) >= low
    assert pinned["pytest"] == f"pytest=={lock['pytest']}"  # the tools, as the lock has them
