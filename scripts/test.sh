#!/usr/bin/env bash
# Run every check the project has: formatting, lints, the test suite
# against the pinned nats-server (its build is the release binary's) and
# validation of every shipped configuration file with that binary. Run from
# anywhere: scripts/test.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }

step "nats-server (pinned)"
OMNIROUTE_NATS_SERVER="$("$ROOT/scripts/ensure-nats.sh" --pinned)"
export OMNIROUTE_NATS_SERVER
echo "$OMNIROUTE_NATS_SERVER: $("$OMNIROUTE_NATS_SERVER" --version)"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (-D warnings)"
cargo clippy --all-targets --locked -- -D warnings

step "cargo doc (-D warnings)"
# The module docs state invariants and link what they name: a link to an
# item that is gone or private is an error here, not a silent dead link.
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --lib --locked --quiet

step "cargo deny (advisories, licenses, sources)"
# The advisory database is an offline snapshot (../shared/tools/advisory-db
# makes it, .ci/run calls it); without cargo-deny or the snapshot the step
# is skipped with a note rather than failing a developer's run.
if cargo deny --version >/dev/null 2>&1 && [ -d .tools/advisory-dbs ]; then
    # `--offline` still reads the metadata of every platform's crates in the
    # lock file, which a host build never downloads: fetch them first.
    cargo fetch --locked --quiet
    cargo deny --offline check
else
    echo "skipped: needs cargo-deny and .tools/advisory-dbs (bash .ci/run installs both)"
fi

# Every test, including the ones that run the compiled binary and a short
# run of the throughput benchmark (the full one is `cargo bench`), built
# with the `ci` profile: release optimisations without the release
# profile's whole-program LTO (Cargo.toml). This also builds the binary the
# steps below use: no separate `cargo build`, whose dependencies differ in
# features from the tests' (the dev-dependencies change libc's, so tokio
# and everything above it would be compiled twice; that was about 40 % of a
# cold run).
step "cargo test --profile ci"
cargo test --profile ci --locked --all-targets
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/ci/omniroute"

step "omniroute validate (shipped configuration files)"
shopt -s nullglob
configs=(config/*.toml config/examples/*.toml)
if (( ${#configs[@]} == 0 )); then
    echo "no configuration files found under config/" >&2
    exit 1
fi
failed=0
for config in "${configs[@]}"; do
    if "$BIN" validate --config "$config"; then
        echo "ok      $config"
    else
        echo "INVALID $config" >&2
        failed=$((failed + 1))
    fi
done
if (( failed > 0 )); then
    echo "$failed of ${#configs[@]} configuration files are invalid" >&2
    exit 1
fi

step "all checks passed"
