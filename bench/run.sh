#!/usr/bin/env bash
# Run the benchmarks (not a test): bench/run.sh [--quick] [--only per-op,reuse,express,files,query]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh" dev
cd "$root/bench"
exec "${GATEWAY_VENV:-$root/.venv}/bin/python" run.py "$@"
