#!/usr/bin/env bash
# Replay a Databricks Apps deployment on this machine and time its cold start.
#
#   scripts/simulate-apps.sh               (a) copy the source to a temporary directory, create a
#                                          fresh virtualenv, `pip install -r requirements.txt`,
#                                          `npm install` at the root; then (b)
#   scripts/simulate-apps.sh --no-install  (b) only, here, with the python3 on PATH
#
# (b) runs app.yaml's command with its literal env values, DATABRICKS_APP_PORT and GATEWAY_LOCAL=1
# (a fake workspace: no Databricks needed), waits until the front server answers /api/health,
# prints "cold start: N.N s" (target <= 10 s) and stops it. Exits non-zero if it never answers.
# Environment: SIMULATE_TIMEOUT (60 s).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
install=1
case "${1:-}" in
  "") ;;
  --no-install) install=0 ;;
  -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
  *) echo "simulate-apps.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
esac

work="$(mktemp -d)"
app_pid=""
cleanup() {
  if [ -n "$app_pid" ]; then
    kill -TERM "$app_pid" 2>/dev/null || true
    wait "$app_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

seconds_since() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}")' "$1" "$EPOCHREALTIME"; }

app_dir="$root"
if [ "$install" = 1 ]; then
  # What a deploy uploads: the tracked and new files, not .venv, node_modules or anything ignored.
  app_dir="$work/app"
  mkdir "$app_dir"
  git -C "$root" ls-files -z --cached --others --exclude-standard \
    | (cd "$root" && tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null) \
    | tar -C "$app_dir" -xf -
  started="$EPOCHREALTIME"
  python3 -m venv "$work/venv"
  "$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$app_dir/requirements.txt"
  (cd "$app_dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
  echo "install: $(seconds_since "$started") s (pip install -r requirements.txt, npm install)"
  export PATH="$work/venv/bin:$PATH"  # the platform's python, with requirements.txt installed
fi

cd "$app_dir"
py="$(command -v python3)"
free_port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Nothing of this machine's Databricks or gateway configuration leaks in.
for name in $(compgen -e); do
  case "$name" in DATABRICKS_*|GATEWAY_*) unset "$name" ;; esac
done
# app.yaml's command (NUL-separated) and its literal env values (valueFrom needs a workspace).
mapfile -d '' command < <("$py" -c '
import sys, yaml
spec = yaml.safe_load(open("app.yaml"))
sys.stdout.write("".join(part + "\0" for part in spec["command"]))')
while IFS= read -r -d '' assignment; do
  export "${assignment?}"
done < <("$py" -c '
import sys, yaml
for entry in yaml.safe_load(open("app.yaml")).get("env", []):
    if "value" in entry:
        sys.stdout.write("%s=%s\0" % (entry["name"], entry["value"]))')

DATABRICKS_APP_PORT="$(free_port)"
GATEWAY_PORT="$(free_port)"
GATEWAY_FAKE_PORT="$(free_port)"
export DATABRICKS_APP_PORT GATEWAY_PORT GATEWAY_FAKE_PORT GATEWAY_LOCAL=1
export FRONT_HOST=127.0.0.1  # app.yaml's 0.0.0.0 is for the Apps proxy; this machine needs no more
export DATABRICKS_CONFIG_FILE="$work/no-databrickscfg" GATEWAY_SECRET_FILE="$work/secret"
unset GATEWAY_VENV

url="http://127.0.0.1:$DATABRICKS_APP_PORT/api/health"
started="$EPOCHREALTIME"
"${command[@]}" > "$work/app.log" 2>&1 &
app_pid=$!
deadline=$((SECONDS + ${SIMULATE_TIMEOUT:-60}))
until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
  if ! kill -0 "$app_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
    cat "$work/app.log" >&2
    echo "simulate-apps.sh: the front server never answered $url" >&2
    exit 1
  fi
  sleep 0.1
done
echo "cold start: $(seconds_since "$started") s (target <= 10 s), front server on $url"
