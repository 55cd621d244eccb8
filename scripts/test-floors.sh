#!/usr/bin/env bash
# The Python suite on the declared minimum versions: a virtualenv (.venv-floors) with every
# dependency of pyproject.toml at the lowest version it allows (scripts/floors.py), then pytest.
# A floor the suite fails on is a promise pip would break for a user. Extra arguments go to
# pytest. Usage: scripts/test-floors.sh [pytest args]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${GATEWAY_FLOORS_VENV:-$root/.venv-floors}"
pins="$(python3 scripts/floors.py)"
stamp="$(printf '%s' "$pins" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$venv/.installed-floors" 2>/dev/null)" != "$stamp" ]; then
  echo "test-floors: installing the declared minimum versions into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  printf '%s\n' "$pins" > "$venv/floors.txt"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$venv/floors.txt"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$root"
  echo "$stamp" > "$venv/.installed-floors"
fi
echo "== pytest on the declared minimum versions ($venv)"
"$venv/bin/python" -m pytest -n "${GATEWAY_TEST_WORKERS:-6}" "$@"
