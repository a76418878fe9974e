#!/usr/bin/env bash
# dfns-signer beside the official SDKs, one command: the same N user-action-signed POST /wallets,
# C in flight, after the same warm-up, against ONE local `dfns-signer simulator`, with the same
# key type, by
#   - `dfns-signer bench --base-url …` (this crate's client),
#   - the official TypeScript SDK, @dfns/sdk 0.8.21 + @dfns/sdk-keysigner (benches/sdk-ts),
#   - the official Rust SDK, dfns-sdk-rust 0.3.2 with a P-256 / Ed25519 signer (benches/sdk-rust),
# in alternating rounds (the order rotates each round). Each runner prints the same JSON line
# (requests_per_second, p50_ms, p99_ms, cpu_ms_per_request: its own process's CPU, user +
# system, over the timed part; errors); the script prints every run, the median of each figure
# over the rounds, and the ratios ours / Rust SDK and ours / TS SDK.
#
#   benches/compare.sh [--key-type p256|ed25519] [--requests N] [--concurrency C]
#                      [--rounds R] [--warmup W]
#   defaults: p256, N=2000, C=16, R=3, W=2×C
#
# Builds in release what it runs: dfns-signer (target/release) and the Rust SDK runner (into
# target/sdk-rust, --locked); installs the TS runner's pinned packages into target/sdk-ts
# (`npm ci`: the npm registry must be reachable the first time). Needs cargo, node 18+ and npm;
# the throw-away keys come from openssl (without it, tests/fixtures/keys/ is used). Takes
# minutes; not part of the test suite. The last line of its output is a JSON summary.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

fail() { # status, what went wrong, what to do
  echo "error: $2" >&2
  echo "  what to do: $3" >&2
  exit "$1"
}
say() { echo "compare: $*" >&2; }

key_type=p256 requests=2000 concurrency=16 rounds=3 warmup=
while [ $# -gt 0 ]; do
  case "$1" in
    --key-type | --requests | --concurrency | --rounds | --warmup)
      [ $# -ge 2 ] || fail 2 "$1 needs a value" "see benches/compare.sh --help"
      case "$1" in
        --key-type) key_type=$2 ;;
        --requests) requests=$2 ;;
        --concurrency) concurrency=$2 ;;
        --rounds) rounds=$2 ;;
        --warmup) warmup=$2 ;;
      esac
      shift 2
      ;;
    -h | --help)
      sed -n '2,/^set -euo pipefail/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    *) fail 2 "unknown argument \`$1\`" "see benches/compare.sh --help" ;;
  esac
done
case "$key_type" in
  p256 | ed25519) ;;
  *) fail 2 "--key-type $key_type is not p256 or ed25519" "give --key-type p256 or --key-type ed25519" ;;
esac
for pair in "requests:$requests" "concurrency:$concurrency" "rounds:$rounds"; do
  [[ ${pair#*:} =~ ^[1-9][0-9]*$ ]] || fail 2 "--${pair%%:*} must be a whole number, at least 1; got \`${pair#*:}\`" "e.g. --${pair%%:*} 3"
done
warmup=${warmup:-$((2 * concurrency))}
[[ $warmup =~ ^[0-9]+$ ]] || fail 2 "--warmup must be a whole number; got \`$warmup\`" "e.g. --warmup 32"

for tool in cargo node npm; do
  command -v "$tool" >/dev/null 2>&1 ||
    fail 2 "\`$tool\` is not on PATH" "install it (Debian: apt-get install -y nodejs npm; Rust: rustup), then run again"
done

# ---- build what runs -------------------------------------------------------------------------
say "building dfns-signer (release)"
cargo build --release --locked --quiet --bin dfns-signer
OURS=$ROOT/target/release/dfns-signer
"$OURS" bench --help >/dev/null 2>&1 ||
  fail 1 "$OURS has no \`bench\` command (a stale build?)" "run cargo build --release --bin dfns-signer, then again"

say "building the official Rust SDK runner (benches/sdk-rust, release)"
CARGO_TARGET_DIR=$ROOT/target/sdk-rust cargo build --release --locked --quiet \
  --manifest-path benches/sdk-rust/Cargo.toml
RUST_SDK=$ROOT/target/sdk-rust/release/dfns-sdk-rust-bench

# The TS runner runs from target/sdk-ts, so its node_modules stay out of the source tree.
TS_DIR=$ROOT/target/sdk-ts
mkdir -p "$TS_DIR"
cp benches/sdk-ts/package.json benches/sdk-ts/package-lock.json benches/sdk-ts/.npmrc \
  benches/sdk-ts/bench.mjs "$TS_DIR/"
if [ ! -f "$TS_DIR/node_modules/@dfns/sdk/package.json" ] ||
  ! cmp -s "$TS_DIR/package-lock.json" "$TS_DIR/.installed-lock.json"; then
  say "installing the official TypeScript SDK (npm ci in target/sdk-ts)"
  (cd "$TS_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
    fail 1 "npm ci failed in $TS_DIR" "the npm registry must be reachable to install the pinned @dfns/sdk"
  cp "$TS_DIR/package-lock.json" "$TS_DIR/.installed-lock.json"
fi

# ---- a throw-away key and one simulator ------------------------------------------------------
WORK=$(mktemp -d)
SIM_PID=
cleanup() {
  if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

KEY=$WORK/key.pem
if command -v openssl >/dev/null 2>&1; then
  case "$key_type" in
    p256) openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$KEY" 2>/dev/null ;;
    ed25519) openssl genpkey -algorithm ED25519 -out "$KEY" 2>/dev/null ;;
  esac
  openssl pkey -in "$KEY" -pubout -out "$WORK/key.pub.pem"
else
  say "no openssl: using tests/fixtures/keys/$key_type.pem"
  cp "tests/fixtures/keys/$key_type.pem" "$KEY"
  cp "tests/fixtures/keys/$key_type.pub.pem" "$WORK/key.pub.pem"
fi

"$OURS" simulator --listen 127.0.0.1:0 --root-public-key "$WORK/key.pub.pem" \
  >"$WORK/sim.json" 2>"$WORK/sim.log" &
SIM_PID=$!
for _ in $(seq 100); do
  [ -s "$WORK/sim.json" ] && break
  kill -0 "$SIM_PID" 2>/dev/null || fail 1 "the simulator stopped: $(cat "$WORK/sim.log")" "see the line above"
  sleep 0.1
done
[ -s "$WORK/sim.json" ] || fail 1 "the simulator printed nothing in 10 s" "run $OURS simulator by hand to see why"
field() { node -e 'const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8").split("\n")[0]); process.stdout.write(String(s[process.argv[2]]))' "$WORK/sim.json" "$1"; }
BASE_URL=$(field baseUrl)
CRED_ID=$(field credId)
# The root token reaches the runners through the environment, never their arguments (ps).
DFNS_AUTH_TOKEN=$(field authToken)
export DFNS_AUTH_TOKEN

say "simulator at $BASE_URL; $key_type key; N=$requests C=$concurrency warm-up=$warmup; $rounds round(s)"
say "machine: $(nproc) CPU(s); $(node --version); $(rustc --version 2>/dev/null || echo rustc ?)"

# ---- the rounds ------------------------------------------------------------------------------
run_one() { # id → runs it, appends {"id","round","report"} to results.jsonl
  local id=$1 round=$2 out=$WORK/$1.out err=$WORK/$1.err status=0
  case "$id" in
    dfns-signer)
      env -u DFNS_SIGNER_CONFIG -u DFNS_SIGNER_PROFILE -u DFNS_API_URL -u DFNS_KEY -u DFNS_CRED_ID \
        XDG_CONFIG_HOME="$WORK" \
        "$OURS" bench --base-url "$BASE_URL" --key "file:$KEY" --cred-id "$CRED_ID" \
        --requests "$requests" --concurrency "$concurrency" --warmup "$warmup" --output json \
        >"$out" 2>"$err" || status=$?
      ;;
    rust-sdk)
      "$RUST_SDK" "$BASE_URL" "$CRED_ID" "$KEY" "$requests" "$concurrency" "$warmup" \
        >"$out" 2>"$err" || status=$?
      ;;
    ts-sdk)
      node "$TS_DIR/bench.mjs" "$BASE_URL" "$CRED_ID" "$KEY" "$requests" "$concurrency" "$warmup" \
        >"$out" 2>"$err" || status=$?
      ;;
  esac
  if [ "$status" -ne 0 ]; then
    cat "$err" >&2
    fail 1 "the $id runner failed (exit $status) in round $round" "see its output above"
  fi
  printf '{"id":"%s","round":%d,"report":%s}\n' "$id" "$round" "$(tail -n 1 "$out")" >>"$WORK/results.jsonl"
  node -e '
    const r = JSON.parse(process.argv[1]);
    const f = (x, d) => (x == null ? "?" : Number(x).toFixed(d));
    console.error(`round ${process.argv[2]}  ${process.argv[3].padEnd(12)} ${f(r.requests_per_second, 1).padStart(8)} req/s  p50 ${f(r.p50_ms, 2).padStart(7)} ms  p99 ${f(r.p99_ms, 2).padStart(7)} ms  CPU ${f(r.cpu_ms_per_request, 3).padStart(7)} ms/request  errors ${r.errors}`);
  ' "$(tail -n 1 "$out")" "$round" "$id"
}

order=(dfns-signer rust-sdk ts-sdk)
for round in $(seq "$rounds"); do
  for i in 0 1 2; do
    run_one "${order[$(((i + round - 1) % 3))]}" "$round"
  done
done

# ---- the summary -----------------------------------------------------------------------------
node - "$WORK/results.jsonl" "$key_type" "$requests" "$concurrency" "$warmup" "$rounds" <<'EOF'
const fs = require('fs');
const [file, keyType, requests, concurrency, warmup, rounds] = process.argv.slice(2);
const runs = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const names = { 'dfns-signer': 'dfns-signer', 'rust-sdk': 'official Rust SDK', 'ts-sdk': 'official TS SDK' };
const median = (xs) => {
  const s = xs.filter((x) => x != null).sort((a, b) => a - b);
  if (s.length === 0) return null;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const figures = {};
for (const id of Object.keys(names)) {
  const mine = runs.filter((r) => r.id === id).map((r) => r.report);
  figures[id] = {
    requests_per_second: median(mine.map((r) => r.requests_per_second)),
    p50_ms: median(mine.map((r) => r.p50_ms)),
    p99_ms: median(mine.map((r) => r.p99_ms)),
    cpu_ms_per_request: median(mine.map((r) => r.cpu_ms_per_request)),
    errors: mine.reduce((n, r) => n + r.errors, 0),
    runner: mine[0]?.runner ?? 'dfns-signer bench',
  };
}
const f = (x, d) => (x == null ? '?' : x.toFixed(d));
const out = [];
out.push(`\n${keyType}, N=${requests}, C=${concurrency}, warm-up ${warmup}, median of ${rounds} round(s):`);
out.push(`${''.padEnd(20)}${'requests/s'.padStart(12)}${'p50 ms'.padStart(10)}${'p99 ms'.padStart(10)}${'CPU ms/request'.padStart(16)}${'errors'.padStart(8)}`);
for (const [id, name] of Object.entries(names)) {
  const x = figures[id];
  out.push(`${name.padEnd(20)}${f(x.requests_per_second, 1).padStart(12)}${f(x.p50_ms, 2).padStart(10)}${f(x.p99_ms, 2).padStart(10)}${f(x.cpu_ms_per_request, 3).padStart(16)}${String(x.errors).padStart(8)}`);
}
const ratio = (a, b) => (a == null || b == null || b === 0 ? null : a / b);
const ours = figures['dfns-signer'];
const ratios = {
  cpu_per_request_ours_over_rust_sdk: ratio(ours.cpu_ms_per_request, figures['rust-sdk'].cpu_ms_per_request),
  cpu_per_request_ours_over_ts_sdk: ratio(ours.cpu_ms_per_request, figures['ts-sdk'].cpu_ms_per_request),
  throughput_ours_over_rust_sdk: ratio(ours.requests_per_second, figures['rust-sdk'].requests_per_second),
  throughput_ours_over_ts_sdk: ratio(ours.requests_per_second, figures['ts-sdk'].requests_per_second),
};
out.push('');
out.push(`CPU per request (lower is better):  ours / Rust SDK = ${f(ratios.cpu_per_request_ours_over_rust_sdk, 2)}   ours / TS SDK = ${f(ratios.cpu_per_request_ours_over_ts_sdk, 2)}`);
out.push(`throughput (higher is better):      ours / Rust SDK = ${f(ratios.throughput_ours_over_rust_sdk, 2)}   ours / TS SDK = ${f(ratios.throughput_ours_over_ts_sdk, 2)}`);
console.log(out.join('\n'));
console.log(JSON.stringify({ key_type: keyType, requests: +requests, concurrency: +concurrency, warmup: +warmup, rounds: +rounds, runners: figures, ratios }));
EOF
