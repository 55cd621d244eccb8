"""Print the pins of a "floors" install: every dependency pyproject.toml declares (and those of
the `local` and `otel` extras) at the lowest version it allows, the test tools at
requirements-dev.lock's pins.
`scripts/test-floors.sh` installs them and runs the suite: a declared minimum is one the suite
passed on, not a guess (uvicorn 0.40 was allowed and broke every POST /run).

    python scripts/floors.py > floors.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Optional features of the gateway: held to their floors too.
FEATURE_EXTRAS = ("local", "otel")
# Installed at requirements-dev.lock's versions: what runs the suite, not what it proves.
TOOL_EXTRAS = ("test",)


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.-]+", requirement)
    assert match, requirement
    return match[0].lower().replace("_", "-")


def floor(requirement: str) -> str:
    """`uvicorn[standard]>=0.42` -> `uvicorn[standard]==0.42`; a requirement without `>=` is an
    error: every dependency must say the lowest version it works with."""
    match = re.fullmatch(r"([A-Za-z0-9_.\[\]-]+)\s*>=\s*([0-9][0-9.]*)(,.*)?", requirement)
    if match is None:
        raise SystemExit(f"no '>=' floor in {requirement!r}")
    return f"{match[1]}=={match[2]}"


def pins(project: dict[str, Any], lock: dict[str, str]) -> list[str]:
    extras = project["optional-dependencies"]
    floors = [floor(r) for r in [*project["dependencies"], *declared(extras, FEATURE_EXTRAS)]]
    pinned = {_name(line) for line in floors}
    tools = sorted({_name(r) for r in declared(extras, TOOL_EXTRAS) if _name(r) not in pinned})
    missing = [name for name in tools if name not in lock]
    if missing:
        raise SystemExit(f"not in requirements-dev.lock: {', '.join(missing)}")
    return [*floors, *(f"{name}=={lock[name]}" for name in tools)]


def declared(extras: dict[str, list[str]], names: tuple[str, ...]) -> list[str]:
    return [requirement for name in names for requirement in extras[name]]


def lock_pins(text: str) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, flags=re.MULTILINE)
    return {_name(name): version for name, version in found}


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = lock_pins((ROOT / "requirements-dev.lock").read_text())
    sys.stdout.write("".join(f"{line}\n" for line in pins(project, lock)))


if __name__ == "__main__":
    main()
