#!/usr/bin/env bash
# Fails when the library's public API differs from the committed snapshot, tests/public-api.txt:
# a 0.x crate's public surface is its contract, so every change to it is a reviewed diff.
# Renders the docs (the same command as .ci/run, so CI builds them once), reads the API out of
# them with hsm-config/public_api.py and compares. After an intended change:
#   DFNS_SIGNER_REGENERATE=1 hsm-config/check-public-api.sh   # then commit tests/public-api.txt
# Run by hsm-config/run-tests.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "public API check: rendering the docs (cargo doc --all-features --no-deps)" >&2
RUSTDOCFLAGS="-D warnings" cargo doc --locked --all-features --no-deps --quiet
current="$(mktemp)"
trap 'rm -f "$current"' EXIT
python3 hsm-config/public_api.py target/doc/dfns_signer >"$current"

if [ -n "${DFNS_SIGNER_REGENERATE:-}" ]; then
  if [ -n "${CI:-}" ]; then
    echo "check-public-api.sh: refusing DFNS_SIGNER_REGENERATE under CI: CI checks the snapshot," \
         "it does not rewrite it." >&2
    exit 2
  fi
  cp "$current" tests/public-api.txt
  echo "public API check: wrote tests/public-api.txt ($(grep -c '^[a-z]' tests/public-api.txt) items)" >&2
  exit 0
fi

if ! diff -u tests/public-api.txt "$current" >&2; then
  echo "error: the public API differs from tests/public-api.txt (diff above: - snapshot, + now)." >&2
  echo "If the change is intended, run DFNS_SIGNER_REGENERATE=1 hsm-config/check-public-api.sh" \
       "and commit tests/public-api.txt; if not, make the new item pub(crate) or #[doc(hidden)]." >&2
  exit 1
fi
echo "public API check: $(grep -c '^[a-z]' tests/public-api.txt) items, as in tests/public-api.txt" >&2
