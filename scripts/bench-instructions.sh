#!/usr/bin/env bash
# Instructions the routing core executes for a fixed workload, per engine
# entry point: the quick run of benches/routing_scale/ (1 000 agents,
# 200 queues, 2 000 waiting) under valgrind's callgrind, collecting only
# inside Engine::on_inbound, on_agent and on_tick in turn.
#
# Wall-clock latency on a shared 2-core machine moves 20-50 % between runs;
# these counts repeat within 0.1 % for the same binary and inputs (only
# random offer ids and the hasher's seed differ), so two commits can be
# compared closely: run this on each and compare the numbers.
# Prints one JSON object. Needs valgrind (Debian package `valgrind`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
command -v valgrind >/dev/null || { echo "valgrind not found (apt-get install valgrind)" >&2; exit 1; }

BIN="$(cargo bench --bench routing_scale --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "routing_scale":
        print(m["executable"])')"
[ -x "$BIN" ] || { echo "could not build the routing_scale bench" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
out="{"
sep=""
for f in on_inbound on_agent on_tick; do
    valgrind --tool=callgrind --callgrind-out-file="$TMP/$f.out" \
        --toggle-collect="*Engine*${f}*" "$BIN" >/dev/null 2>"$TMP/$f.err"
    n="$(sed -n 's/^summary: //p' "$TMP/$f.out")"
    out="$out$sep\"${f}_instructions\":${n:-null}"
    sep=","
done
echo "$out,\"workload\":\"routing_scale quick mode\"}"
