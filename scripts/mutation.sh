#!/usr/bin/env bash
# Mutation testing of the security-critical modules (paths, auth, the error boundary) with
# mutmut, against their fast test files (see [tool.mutmut] in pyproject.toml). Slow, so not
# part of scripts/test.sh: run it when those modules or their tests change, then read
# `mutmut results` (survivors) and `mutmut show <name>` (a survivor's diff).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/bootstrap.sh dev
py="${GATEWAY_VENV:-$root/.venv}/bin/python"
"$py" -m pip install --quiet --disable-pip-version-check "mutmut==3.8.1"
rm -rf mutants
"$py" -m mutmut run "$@"
"$py" -m mutmut results
