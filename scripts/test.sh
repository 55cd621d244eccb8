#!/usr/bin/env bash
# The project's test command: lint and type checks, then the Python suite and, alongside it, the
# Node suites. Extra arguments go to pytest (`-n 0` runs it in one process).
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

# The example app's page is tested in a real headless Chromium, found the way that test finds
# it (CHROMIUM_PATH / CHROME_PATH, names on PATH, usual paths). None: install Debian's if we
# can; still none: the browser test skips, and the last line of the run says so.
find_chromium() {
  node --input-type=module -e '
    import { findChromium } from "./examples/express-app/test/chromium.js";
    const { path } = findChromium();
    if (path) console.log(path); else process.exitCode = 1;'
}
echo "== chromium"
browser_skipped=0
if ! find_chromium; then
  if [ -z "${CHROMIUM_PATH:-}${CHROME_PATH:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "no Chromium found; installing Debian's chromium"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
      || echo "apt-get install chromium failed" >&2
  fi
  # An override that points nowhere is not a skip: the browser test fails and says why.
  find_chromium || [ -n "${CHROMIUM_PATH:-}${CHROME_PATH:-}" ] || browser_skipped=1
fi

# Most tests wait on sockets and subprocesses, not on the CPU: more workers than cores pay off
# (on 2 cores, 6 workers finished the suite in 60 s where 4 took 68 s). mypy and the Node suites
# run meanwhile; their output is held and printed after pytest's, whole.
workers="${GATEWAY_TEST_WORKERS:-6}"
alongside() {
  local dir
  echo "== mypy"
  "$py" -m mypy || return  # strict, on gateway/ (pyproject [tool.mypy])
  for dir in clients/node examples/express-app; do
    [ -f "$dir/package.json" ] || continue
    echo "== typecheck, node --test ($dir)"
    (cd "$dir" && npm run --silent --if-present typecheck) || return  # tsc on index.d.ts and its consumer
    (cd "$dir" && GATEWAY_PYTHON="$py" node --test --test-concurrency=2 --test-reporter=spec) || return
  done
}
held="$(mktemp)"
trap 'rm -f "$held"' EXIT
alongside >"$held" 2>&1 &
alongside_pid=$!

echo "== pytest (-n $workers; mypy and the Node suites run alongside, their output follows)"
pytest_status=0
"$py" -m pytest -n "$workers" "$@" || pytest_status=$?
alongside_status=0
wait "$alongside_pid" || alongside_status=$?
cat "$held"

if [ "$browser_skipped" = 1 ]; then
  echo "!! browser test SKIPPED: no Chromium found (set CHROMIUM_PATH or apt-get install chromium)" >&2
fi
if [ "$pytest_status" != 0 ] || [ "$alongside_status" != 0 ]; then
  echo "!! FAILED: pytest exit $pytest_status, mypy and Node suites exit $alongside_status" >&2
  exit 1
fi
