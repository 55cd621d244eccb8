#!/usr/bin/env bash
# Install what the project needs, once: a Python virtualenv from the lock file and the npm
# dependencies of the Node client and the example app. Later runs return at once unless a lock
# file changed. Usage: scripts/bootstrap.sh [runtime|dev]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kind="${1:-runtime}"
venv="${GATEWAY_VENV:-$root/.venv}"
lock="$root/requirements.lock"
[ "$kind" = dev ] && lock="$root/requirements-dev.lock"

stamp_of() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

python_stamp="$(stamp_of "$lock" "$root/pyproject.toml")"
if [ "$(cat "$venv/.installed-$kind" 2>/dev/null)" != "$python_stamp" ]; then
  echo "bootstrap: installing Python dependencies ($kind) into $venv" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$lock"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$root"
  echo "$python_stamp" > "$venv/.installed-$kind"
fi

for dir in "$root/clients/node" "$root/examples/express-app"; do
  [ -f "$dir/package.json" ] || continue
  node_stamp="$(stamp_of "$dir/package.json" "$dir/package-lock.json")"
  if [ "$(cat "$dir/node_modules/.installed" 2>/dev/null)" != "$node_stamp" ]; then
    echo "bootstrap: installing npm dependencies in ${dir#"$root"/}" >&2
    if [ -f "$dir/package-lock.json" ]; then
      (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    else
      (cd "$dir" && npm install --no-audit --no-fund --loglevel=error)
    fi
    echo "$node_stamp" > "$dir/node_modules/.installed"
  fi
done
