#!/usr/bin/env bash
# The project's test command: lint, then the Python suite, then the Node suites.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/bootstrap.sh dev
py="${GATEWAY_VENV:-$root/.venv}/bin/python"

bin="$(dirname "$py")"
echo "== ruff"
"$py" -m ruff check .
"$py" -m ruff format --check .
echo "== hadolint, shellcheck"
"$bin/hadolint" Dockerfile
"$bin/shellcheck" scripts/*.sh .ci/run

echo "== pytest"
"$py" -m pytest "$@"

for dir in clients/node examples/express-app; do
  if [ -f "$dir/package.json" ]; then
    echo "== node --test ($dir)"
    (cd "$dir" && GATEWAY_PYTHON="$py" node --test --test-reporter=spec)
  fi
done
