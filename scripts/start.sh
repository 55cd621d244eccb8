#!/usr/bin/env bash
# Start the Databricks Gateway and the front server together (the container's entry point).
#
#   scripts/start.sh            against the workspace in DATABRICKS_HOST (+ token or OAuth M2M)
#   scripts/start.sh --local    against a fake workspace with demo data (no Databricks needed)
#   scripts/start.sh --no-install   never install (Databricks Apps: its pip and npm already did)
#
# Environment: GATEWAY_PORT (8765), DATABRICKS_APP_PORT / PORT (3000, the front server),
# GATEWAY_LOCAL=1 (same as --local), GATEWAY_SKIP_INSTALL=1 (never install),
# FRONT_HOST (127.0.0.1; the image and app.yaml set 0.0.0.0), GATEWAY_START_TIMEOUT (30 s),
# GATEWAY_SECRET (a fresh one per boot), GATEWAY_SECRET_FILE (.gateway/secret: where it is written),
# FRONT_COMMAND (default: node examples/express-app/server.js), GATEWAY_VENV (.venv; without
# one, the python3 on PATH, with the packages of requirements.txt installed).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

local_mode="${GATEWAY_LOCAL:-0}"
for arg in "$@"; do
  case "$arg" in
    --local) local_mode=1 ;;
    --no-install) GATEWAY_SKIP_INSTALL=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "start.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
  esac
done

log() { printf '{"level":"%s","logger":"start.sh","event":"%s"}\n' "$1" "$2" >&2; }
die() { log error "$1"; exit 1; }

if [ "${GATEWAY_SKIP_INSTALL:-0}" != 1 ]; then
  scripts/bootstrap.sh runtime
fi
py="${GATEWAY_VENV:-$root/.venv}/bin/python"
# No virtualenv (Databricks Apps, where pip installed requirements.txt): the python on PATH.
[ -x "$py" ] || py="$(command -v python3 || command -v python)" || die "no python3 on PATH"
# The gateway runs from this source tree whether or not it is pip-installed.
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"

export GATEWAY_PORT="${GATEWAY_PORT:-8765}"
front_port="${DATABRICKS_APP_PORT:-${PORT:-3000}}"
[ "$GATEWAY_PORT" != "$front_port" ] || die "GATEWAY_PORT and the front server's port are both $front_port"
export GATEWAY_HOST=127.0.0.1
export GATEWAY_AUTH_MODE="${GATEWAY_AUTH_MODE:-service}"  # read by the gateway and the Node client
if [ -z "${GATEWAY_SECRET:-}" ]; then
  GATEWAY_SECRET="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"  # per boot, never printed
fi
export GATEWAY_SECRET

# The secret in use goes to a file only its owner can read, so a shell can call the gateway
# (README: `export GATEWAY_SECRET=$(cat .gateway/secret)`); the log names the file, never the
# secret. 0600 from the first byte: umask 077, a temporary name, then a rename.
secret_file="${GATEWAY_SECRET_FILE:-$root/.gateway/secret}"
shown_secret_file="${secret_file#"$root"/}"
if (umask 077 && mkdir -p "$(dirname "$secret_file")" \
    && printf '%s\n' "$GATEWAY_SECRET" > "$secret_file.$$" && mv -f "$secret_file.$$" "$secret_file"); then
  log info "the gateway secret is in $shown_secret_file (0600): export GATEWAY_SECRET=\$(cat $shown_secret_file)"
else
  rm -f "$secret_file.$$"
  secret_file=""
  log warning "could not write the gateway secret to $shown_secret_file; set GATEWAY_SECRET yourself to call the gateway"
fi
forget_secret() {  # only if it is still ours: another start.sh may have written its own since
  if [ -n "$secret_file" ] && [ "$(cat "$secret_file" 2>/dev/null)" = "$GATEWAY_SECRET" ]; then
    rm -f "$secret_file"
  fi
}

pids=()       # front server, gateway, fake: the order they stop in
graces=()     # tenths of a second each may take; 3 + 8 + 2 s stays under Apps' 15 s SIGKILL
stop_all() {
  local i pid
  for i in "${!pids[@]}"; do
    pid="${pids[$i]}"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 "${graces[$i]}"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  forget_secret
}
# shellcheck disable=SC2329  # invoked by the traps below
on_signal() {
  log info "stopping"
  stop_all
  exit "$1"
}
trap 'on_signal 143' TERM
trap 'on_signal 130' INT

wait_healthy() {  # url pid name
  local deadline=$((SECONDS + ${GATEWAY_START_TIMEOUT:-30}))
  until "$py" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" 2>/dev/null; do
    kill -0 "$2" 2>/dev/null || { stop_all; die "$3 exited during start-up"; }
    [ "$SECONDS" -lt "$deadline" ] || { stop_all; die "$3 did not answer $1 in time"; }
    sleep 0.2
  done
}

if [ "$local_mode" = 1 ]; then
  fake_port="${GATEWAY_FAKE_PORT:-8766}"
  "$py" -m gateway.testing --port "$fake_port" &
  fake_pid=$!
  pids=("$fake_pid")
  graces=(20)
  wait_healthy "http://127.0.0.1:$fake_port/.well-known/databricks-config" "$fake_pid" "fake workspace"
  export DATABRICKS_HOST="http://127.0.0.1:$fake_port" DATABRICKS_TOKEN=dapi-local-service
  export DATABRICKS_WAREHOUSE_ID=fakewarehouse0001
  export GATEWAY_LOCAL=1  # the front server's page shows a local-mode banner
  unset DATABRICKS_CLIENT_ID DATABRICKS_CLIENT_SECRET DATABRICKS_CONFIG_PROFILE
  log warning "LOCAL MODE: a fake workspace on 127.0.0.1:$fake_port with demo data; no real Databricks workspace is in use"
fi

"$py" -m gateway &
gateway_pid=$!
pids=("$gateway_pid" "${pids[@]}")
graces=(80 "${graces[@]}")
wait_healthy "http://127.0.0.1:$GATEWAY_PORT/health" "$gateway_pid" "gateway"
# Alive is not ready: say plainly when Databricks cannot be used, and keep serving so the app
# comes up degraded (its /ready turns 200 once Databricks answers).
readiness="$("$py" - "$GATEWAY_PORT" <<'PY'
import json, os, sys, urllib.error, urllib.request

request = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/ready",
    headers={"X-Gateway-Secret": os.environ["GATEWAY_SECRET"]},
)
try:
    urllib.request.urlopen(request, timeout=15).close()
    reason = "ready"
except urllib.error.HTTPError as exc:
    reason = json.loads(exc.read() or b"{}").get("reason") or f"HTTP {exc.code}"
except OSError as exc:
    reason = f"the readiness check failed: {exc}"
print(json.dumps(reason)[1:-1])  # safe inside the JSON log line
PY
)"
if [ "$readiness" = ready ]; then
  log info "gateway ready on 127.0.0.1:$GATEWAY_PORT"
else
  log warning "gateway up on 127.0.0.1:$GATEWAY_PORT but NOT READY: $readiness"
fi

export PORT="$front_port" HOST="${FRONT_HOST:-127.0.0.1}"
if [ -n "${FRONT_COMMAND:-}" ]; then
  bash -c "exec $FRONT_COMMAND" &
else
  node examples/express-app/server.js &
fi
front_pid=$!
pids=("$front_pid" "${pids[@]}")
graces=(30 "${graces[@]}")
log info "front server starting on $HOST:$PORT"

# Whichever child dies first takes the others down, and the script exits non-zero.
set +e
wait -n "${pids[@]}"
status=$?
set -e
log error "a child process exited (status $status); stopping the rest"
stop_all
exit $((status == 0 ? 1 : status))
