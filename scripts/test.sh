#!/usr/bin/env bash
# The project's test command: lint and type checks, then the Python suite, then the Node suites.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/bootstrap.sh dev
py="${GATEWAY_VENV:-$root/.venv}/bin/python"

bin="$(dirname "$py")"
echo "== ruff"
"$py" -m ruff check .
"$py" -m ruff format --check .
echo "== mypy"
"$py" -m mypy  # strict, on gateway/ (pyproject [tool.mypy])
echo "== hadolint, shellcheck"
"$bin/hadolint" Dockerfile
"$bin/shellcheck" scripts/*.sh .ci/run

echo "== pytest"
"$py" -m pytest "$@"

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

for dir in clients/node examples/express-app; do
  if [ -f "$dir/package.json" ]; then
    echo "== typecheck, node --test ($dir)"
    (cd "$dir" && npm run --silent --if-present typecheck)  # tsc on index.d.ts and its consumer
    (cd "$dir" && GATEWAY_PYTHON="$py" node --test --test-reporter=spec)
  fi
done

if [ "$browser_skipped" = 1 ]; then
  echo "!! browser test SKIPPED: no Chromium found (set CHROMIUM_PATH or apt-get install chromium)" >&2
fi
