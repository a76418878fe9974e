#!/usr/bin/env bash
# One `dfns-signer call` on loopback, as a script or a person runs it: wall time (process start
# to exit, 20 runs: min / median / max) and peak RSS, with a software P-256 key against a local
# simulator in another process. Builds the release binary first.
#
#   benches/one_call.sh
set -euo pipefail
cd "$(dirname "$0")/.."
echo "building the release binary (cargo build --release)…" >&2
cargo build --release --quiet
BIN=$PWD/target/release/dfns-signer
KEY=$PWD/tests/fixtures/keys/p256.pem
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT

"$BIN" simulator --listen 127.0.0.1:0 --root-public-key "${KEY%.pem}.pub.pem" \
  --root-cred-id bench-cred > "$WORK/sim.json" &
until [ -s "$WORK/sim.json" ]; do sleep 0.1; done
BASE=$(sed -n 's/.*"baseUrl":"\([^"]*\)".*/\1/p' "$WORK/sim.json")
export DFNS_AUTH_TOKEN
DFNS_AUTH_TOKEN=$(sed -n 's/.*"authToken":"\([^"]*\)".*/\1/p' "$WORK/sim.json")
CALL=("$BIN" call POST /wallets --data '{"network":"EthereumSepolia"}' --base-url "$BASE"
      --key "file:$KEY" --cred-id bench-cred --output json)

python3 - "${CALL[@]}" <<'PY'
import subprocess, sys, time
call = sys.argv[1:]
walls = []
for _ in range(20):
    started = time.perf_counter()
    subprocess.run(call, check=True, capture_output=True)
    walls.append((time.perf_counter() - started) * 1000)
walls.sort()
print(f"one signed call (init, sign, complete, POST /wallets): wall ms min {walls[0]:.1f}, "
      f"median {walls[10]:.1f}, max {walls[-1]:.1f} (20 runs)")
PY
# GNU time reads the call's own peak RSS (Python's rusage of children would count the forked
# interpreter too).
if [ -x /usr/bin/time ]; then
  /usr/bin/time -f "peak RSS of one call: %M KiB" "${CALL[@]}" > /dev/null
else
  echo "peak RSS: install GNU time (apt-get install time) to measure it" >&2
fi
