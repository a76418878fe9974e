#!/usr/bin/env bash
# The demo, from a fresh clone on Debian (as root): installs SoftHSM when missing, creates a
# throw-away token with a random PIN, and runs `dfns-signer demo`, which starts a local Dfns API
# simulator, generates the credential key on the token, registers it as a service account's
# credential and makes user-action-signed calls with it. Everything is removed on exit.
# Extra arguments go to `dfns-signer demo` (e.g. --algorithm ed25519).
set -euo pipefail
cd "$(dirname "$0")/.."
hsm-config/install-deps.sh demo

work=$(mktemp -d "${TMPDIR:-/tmp}/dfns-signer-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
# A fresh random PIN for a token that lives for one run; it only travels through the environment.
pin=$(od -An -N8 -tu8 /dev/urandom | tr -dc 0-9 | cut -c1-8)
so_pin=$(od -An -N8 -tu8 /dev/urandom | tr -dc 0-9 | cut -c1-8)
eval "$(KEYS='' TOKEN_LABEL=dfns-demo USER_PIN=$pin SO_PIN=$so_pin hsm-config/softhsm/init-token.sh "$work" 2>/dev/null)"
export DFNS_DEMO_PIN=$pin

cargo run --quiet --locked --no-default-features --features cli,pkcs11,simulator -- \
  demo --pkcs11 "pkcs11:token=dfns-demo?module-path=$DFNS_SIGNER_PKCS11_MODULE&pin-source=env:DFNS_DEMO_PIN" "$@"
