#!/usr/bin/env bash
# Run omniroute locally against a private NATS server (JetStream on).
#
#   scripts/run.sh [OMNIROUTE ARGS...]
#
# Starts the pinned (or a suitable) nats-server on 127.0.0.1 with a random
# port and its JetStream store in .data/nats, builds omniroute in release
# mode, prints the URLs and subjects to use, then runs
#   target/release/omniroute run --config config/omniroute.toml [ARGS...]
# in the foreground. Ctrl-C or SIGTERM stops the daemon (it drains), then
# the NATS server. Extra arguments go to omniroute; pass your own
# `--config FILE` to use another configuration.
#
# Environment:
#   OMNIROUTE_BIN          run this binary instead of building one
#   OMNIROUTE_NATS_SERVER  use this nats-server (see scripts/ensure-nats.sh)
#   NATS_START_TIMEOUT     seconds to wait for NATS to listen (default 20)
# JetStream data persists across runs; `rm -rf .data` starts from scratch.
# shellcheck disable=SC2317  # stop_nats, cleanup and forward run from traps
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DATA_DIR="$ROOT/.data"
NATS_STORE="$DATA_DIR/nats"
NATS_LOG="$DATA_DIR/nats-server.log"
NATS_URL_FILE="$DATA_DIR/nats.url"
CONFIG="config/omniroute.toml"

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'run.sh: error: %s\n' "$*" >&2; exit 1; }

NATS_PID=""
DAEMON_PID=""

stop_nats() {
    [[ -n "$NATS_PID" ]] || return 0
    if kill -0 "$NATS_PID" 2>/dev/null; then
        say "stopping nats-server (pid $NATS_PID)"
        kill -TERM "$NATS_PID" 2>/dev/null || true
        local i
        for ((i = 0; i < 100; i++)); do   # up to 10 s
            kill -0 "$NATS_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$NATS_PID" 2>/dev/null; then
            echo "run.sh: nats-server did not stop in 10 s; killing it" >&2
            kill -KILL "$NATS_PID" 2>/dev/null || true
        fi
    fi
    wait "$NATS_PID" 2>/dev/null || true
    rm -f "$DATA_DIR/nats-server_${NATS_PID}.ports" "$NATS_URL_FILE"
    NATS_PID=""
}

cleanup() {
    local status=$?
    if [[ -n "$DAEMON_PID" ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    stop_nats
    exit "$status"
}
trap cleanup EXIT
# Until the daemon runs, Ctrl-C / SIGTERM just end the script (and the trap
# above stops NATS).
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. NATS -----------------------------------------------------------------
NATS_SERVER="$("$ROOT/scripts/ensure-nats.sh")" || die "no usable nats-server (see above)"

mkdir -p "$NATS_STORE"
rm -f "$DATA_DIR"/nats-server_*.ports
say "starting $("$NATS_SERVER" --version 2>&1 | head -n1) (log: ${NATS_LOG#"$ROOT"/})"
# `set -m` around `&` puts each background child in its own process group:
# a Ctrl-C on the terminal then reaches only this script, which stops the
# daemon (forwarding the signal exactly once) and then NATS.
set -m
"$NATS_SERVER" -a 127.0.0.1 -p -1 -js -sd "$NATS_STORE" --ports_file_dir "$DATA_DIR" \
    >"$NATS_LOG" 2>&1 </dev/null &
NATS_PID=$!
set +m
PORTS_FILE="$DATA_DIR/nats-server_${NATS_PID}.ports"

# Wait for the ports file (written once the listeners are up) and read the
# client URL from it: {"nats":["nats://127.0.0.1:PORT"],...}
NATS_URL=""
deadline=$((SECONDS + ${NATS_START_TIMEOUT:-20}))
while [[ -z "$NATS_URL" ]]; do
    if ! kill -0 "$NATS_PID" 2>/dev/null; then
        tail -n 20 "$NATS_LOG" >&2 || true
        die "nats-server exited during start-up (log: $NATS_LOG)"
    fi
    if (( SECONDS > deadline )); then
        tail -n 20 "$NATS_LOG" >&2 || true
        die "nats-server did not write $PORTS_FILE within ${NATS_START_TIMEOUT:-20} s"
    fi
    if [[ -s "$PORTS_FILE" ]]; then
        NATS_URL="$(grep -o '"nats://[^"]*:[0-9][0-9]*"' "$PORTS_FILE" | head -n1 | tr -d '"' || true)"
    fi
    [[ -n "$NATS_URL" ]] || sleep 0.05
done
printf '%s\n' "$NATS_URL" >"$NATS_URL_FILE"   # scripts/demo.py reads this
say "nats-server is listening at $NATS_URL (pid $NATS_PID)"

# --- 2. omniroute ------------------------------------------------------------
if [[ -n "${OMNIROUTE_BIN:-}" ]]; then
    BIN="$OMNIROUTE_BIN"
    [[ -x "$BIN" ]] || die "OMNIROUTE_BIN=$BIN is not executable"
else
    say "building omniroute (cargo build --release)"
    cargo build --release --quiet
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/omniroute"
fi

args=(run)
have_config=0
for arg in "$@"; do
    case "$arg" in --config|--config=*) have_config=1 ;; esac
done
if (( ! have_config )); then
    args+=(--config "$CONFIG")
fi
args+=("$@")

# The HTTP address: the env override, else [http] listen in the config,
# else the built-in default.
listen="${OMNIROUTE_HTTP__LISTEN:-}"
if [[ -z "$listen" && -f "$CONFIG" ]]; then
    listen="$(awk '
        /^[[:space:]]*\[/ { in_http = ($0 ~ /^[[:space:]]*\[http\][[:space:]]*(#.*)?$/) ; next }
        in_http && /^[[:space:]]*listen[[:space:]]*=/ {
            sub(/^[^=]*=[[:space:]]*"/, ""); sub(/".*$/, ""); print; exit
        }' "$CONFIG")"
fi
listen="${listen:-127.0.0.1:9464}"
case "$listen" in
    0.0.0.0:*) listen="127.0.0.1:${listen#0.0.0.0:}" ;;
    "[::]:"*)  listen="[::1]:${listen#"[::]:"}" ;;
esac
HTTP="http://$listen"

cat >&2 <<INFO

  omniroute local run
  -------------------
  NATS URL   $NATS_URL
  metrics    $HTTP/metrics
  liveness   $HTTP/live
  readiness  $HTTP/ready

  Publish (JSON per the v1 wire contract; header Nats-Msg-Id = event id):
    omni.inbound.<email|chat|social|voice>   customer contacts
    omni.agent.<agent_id>.<type>             profile, presence, accept, decline, respond, complete
  Watch:
    omni.offer.>  omni.event.>  omni.alert.>  omni.dlq.>
  Webhook adapters (embedded defaults; README, "Channel adapters"):
    http://127.0.0.1:8081/webhooks/chat   /social   /voice   /mail
  Try it:  python3 scripts/demo.py --url $NATS_URL --accept --respond

INFO

say "starting: ${BIN#"$ROOT"/} ${args[*]}"
export OMNIROUTE_NATS__URL="$NATS_URL"
# This script's own helper variables are not config overrides.
unset OMNIROUTE_BIN OMNIROUTE_NATS_SERVER
set -m
"$BIN" "${args[@]}" </dev/null &
DAEMON_PID=$!
set +m

forward() {
    kill -s "$1" "$DAEMON_PID" 2>/dev/null || true
}
trap 'forward INT' INT
trap 'forward TERM' TERM

# `wait` returns early when a trapped signal arrives; keep waiting until the
# daemon has really exited, then take its exit status.
while kill -0 "$DAEMON_PID" 2>/dev/null; do
    wait "$DAEMON_PID" 2>/dev/null || true
done
status=0
wait "$DAEMON_PID" 2>/dev/null || status=$?
DAEMON_PID=""
say "omniroute exited with status $status"
exit "$status"
