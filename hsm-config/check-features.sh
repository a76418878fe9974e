#!/usr/bin/env bash
# Builds every feature combination the README documents, and checks that the library without
# the `client` feature carries no HTTP stack (what a custody backend with its own HTTP client,
# or the official Rust SDK, links). Run by hsm-config/run-tests.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

combos=(
  ""                # the protocol and software keys only
  "pkcs11"          # a custody backend with an HSM and its own HTTP stack
  "piv"             # a desk tool's backend, no HTTP
  "client"          # the narrow test run: cargo test --no-default-features --features client
  "client,pkcs11"   # a custody backend with our client and an HSM
  "simulator"       # a users' CI simulator alone: it needs neither our client nor a backend
  "serve,pkcs11"    # the signing service in a custody backend's own binary, no CLI
)
# `cargo check`, refusing warnings too: code left unused in one combination (a helper only the
# `client` feature calls, say) warns only there, and the other checks never see it.
check() {
  local out status=0
  out=$(cargo check --locked --quiet "$@" 2>&1) || status=$?
  if [ "$status" -ne 0 ] || grep -q '^warning' <<<"$out"; then
    printf '%s\n' "$out" >&2
    echo "error: cargo check $* is not clean (see above)" >&2
    echo "  what to do: fix the warning or gate the item with #[cfg(feature = ...)]" >&2
    exit 1
  fi
}
for features in "${combos[@]}"; do
  echo "feature check: --no-default-features --features '${features}'" >&2
  check --no-default-features --features "$features" --lib
done
# The test files compile in the narrow run the README documents; the whole suite compiles with
# every feature in `cargo test --all-features`. (Checking the tests under every combination
# took this script to four minutes of CI, for combinations no user tests with.)
echo "feature check: the tests, --no-default-features --features client" >&2
check --no-default-features --features client --lib --tests

for features in "" "pkcs11" "piv"; do
  if cargo tree --locked -e normal --no-default-features --features "$features" \
      | grep -E '^[│├└ ─]*(reqwest|hyper|tokio|axum) ' >/dev/null; then
    echo "error: --no-default-features --features '${features}' pulls in an HTTP stack:" >&2
    cargo tree --locked -e normal --no-default-features --features "$features" -i reqwest >&2 || true
    exit 1
  fi
done
echo "feature check: every documented combination builds; no HTTP stack without 'client'" >&2
