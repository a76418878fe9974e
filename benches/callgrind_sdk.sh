#!/usr/bin/env bash
# This crate's client beside the official Rust SDK (dfns-sdk-rust 0.3.2, benches/sdk-rust),
# counted rather than timed: instructions per signed `POST /wallets` under callgrind, and
# syscalls per call under `strace -f -c`, both against the SAME simulator in another process
# (`flow_cost --serve`: `dfns_signer::simulator`, the server `dfns-signer simulator` runs, with
# the fixture key as its root credential), so only each client is counted. Each runner makes N1
# and then N2 calls one after the other on tokio's current-thread runtime (after one call that
# opens the connection); the difference divided by N2 − N1 is one call without the start-up.
#
#   benches/callgrind_sdk.sh                       # ed25519 and p256, both runners
#   KEYS=p256 RUNNERS=sdk-rust benches/callgrind_sdk.sh
#   N1=50 N2=250 SYSCALLS=0 benches/callgrind_sdk.sh   # instructions only
#
# Runners: `dfns-signer` (benches/flow_cost.rs --base-url …: the same client, key and call as
# benches/callgrind.sh's simulator column) and `sdk-rust` (dfns-sdk-rust-bench --calls N; its
# signer uses the RustCrypto p256 / ed25519-dalek crates, as the SDK's README has users write
# one). Needs valgrind; strace for the syscall counts (skipped, and said so, without it). Builds
# the Rust SDK runner in release into target/sdk-rust (--locked; crates.io the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N1=${N1:-50}
N2=${N2:-250}
KEYS=${KEYS:-"ed25519 p256"}
RUNNERS=${RUNNERS:-"dfns-signer sdk-rust"}
SYSCALLS=${SYSCALLS:-1}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 2; }
if [ "$SYSCALLS" = 1 ] && ! command -v strace >/dev/null; then
    echo "no strace: syscalls are not counted (apt-get install strace)" >&2
    SYSCALLS=0
fi
exe=$(cargo bench --locked --bench flow_cost --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*flow_cost-[0-9a-f]*\)).*/\1/p' | tail -1)
[ -x "$exe" ] || { echo "could not build benches/flow_cost.rs" >&2; exit 1; }
if [[ " $RUNNERS " == *" sdk-rust "* ]]; then
    CARGO_TARGET_DIR=$ROOT/target/sdk-rust cargo build --release --locked --quiet \
        --manifest-path benches/sdk-rust/Cargo.toml
fi
SDK=$ROOT/target/sdk-rust/release/dfns-sdk-rust-bench
out=$(mktemp -d)
sim_pid=
stop_sim() {
    if [ -n "$sim_pid" ]; then
        exec 3>&- # the simulator runs until its stdin closes
        wait "$sim_pid" 2>/dev/null || true
        sim_pid=
    fi
}
trap 'stop_sim; rm -rf "$out"' EXIT

start_sim() { # key → a simulator whose root credential is tests/fixtures/keys/<key>.pem
    rm -f "$out/in" "$out/sim.json"
    mkfifo "$out/in"
    "$exe" --serve --key "$1" <"$out/in" >"$out/sim.json" &
    sim_pid=$!
    exec 3>"$out/in"
    for _ in $(seq 100); do
        [ -s "$out/sim.json" ] && break
        sleep 0.1
    done
    [ -s "$out/sim.json" ] || { echo "the simulator printed nothing in 10 s" >&2; exit 1; }
    field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" "$out/sim.json"; }
    BASE_URL=$(field baseUrl)
    CRED_ID=$(field credId)
    DFNS_AUTH_TOKEN=$(field authToken)
    export DFNS_AUTH_TOKEN
}

run() { # runner key calls [wrapper…] → runs it
    local runner=$1 key=$2 calls=$3
    shift 3
    case "$runner" in
        dfns-signer) "$@" "$exe" --transport simulator --key "$key" --calls "$calls" \
            --base-url "$BASE_URL" --cred-id "$CRED_ID" ;;
        sdk-rust) "$@" "$SDK" --calls "$calls" "$BASE_URL" "$CRED_ID" "$ROOT/tests/fixtures/keys/$key.pem" ;;
        *) echo "unknown runner $runner" >&2; exit 2 ;;
    esac
}

instructions() { # runner key calls → instructions
    run "$1" "$2" "$3" valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
        >/dev/null 2>"$out/err" || { cat "$out/err" >&2; exit 1; }
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out/err"
}

syscalls() { # runner key calls file → strace -c table in file
    run "$1" "$2" "$3" strace -f -c -o "$4" >/dev/null 2>"$out/err" || { cat "$out/err" >&2; exit 1; }
}

for key in $KEYS; do
    start_sim "$key"
    for runner in $RUNNERS; do
        a=$(instructions "$runner" "$key" "$N1")
        b=$(instructions "$runner" "$key" "$N2")
        echo "$runner $key: $(( (b - a) / (N2 - N1) )) instructions per signed call ($N1 → $N2 calls: $a → $b)"
        if [ "$SYSCALLS" = 1 ]; then
            syscalls "$runner" "$key" "$N1" "$out/s1"
            syscalls "$runner" "$key" "$N2" "$out/s2"
            # Per syscall: (calls at N2 − calls at N1) / (N2 − N1), the most frequent first.
            awk -v d=$((N2 - N1)) '
                $NF == "total" || /^[-%]/ || NF < 5 { next }
                { if (FILENAME ~ /s1$/) c[$NF] -= $4; else c[$NF] += $4 }
                END { for (s in c) printf "%s %.2f\n", s, c[s] / d }' "$out/s1" "$out/s2" |
                sort -k2,2nr >"$out/per"
            total=$(awk '{ t += $2 } END { printf "%.2f", t }' "$out/per")
            detail=$(awk '$2 >= 0.05 { printf "%s%s %s", sep, $1, $2; sep = ", " }' "$out/per")
            echo "$total ($detail)" >"$out/sys"
            echo "$runner $key: $(cat "$out/sys") syscalls per signed call (strace -f -c, $N1 → $N2 calls)"
        fi
    done
    stop_sim
done
