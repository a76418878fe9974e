#!/usr/bin/env bash
# Instructions per signed call, counted by callgrind (stable to <0.5 % on a noisy machine, where
# timings wander by ±20 %): benches/flow_cost.rs runs N1 and then N2 signed calls, and the
# difference divided by N2 − N1 is one call without the start-up.
#
#   benches/callgrind.sh                                  # ed25519 and p256, both transports
#   KEYS="p256 p256-rustcrypto" TRANSPORTS=memory benches/callgrind.sh
#   N1=50 N2=350 benches/callgrind.sh
#
# Needs valgrind. Prints one line per (transport, key): instructions per call.
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-50}
N2=${N2:-250}
KEYS=${KEYS:-"ed25519 p256"}
TRANSPORTS=${TRANSPORTS:-"simulator memory"}
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 2; }
exe=$(cargo bench --locked --bench flow_cost --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*flow_cost-[0-9a-f]*\)).*/\1/p' | tail -1)
[ -x "$exe" ] || { echo "could not build benches/flow_cost.rs" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() { # transport key calls -> instructions
    valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" "$exe" --transport "$1" --key "$2" --calls "$3" \
        > /dev/null 2> "$out/err" || { cat "$out/err" >&2; exit 1; }
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$out/err"
}
for transport in $TRANSPORTS; do
    for key in $KEYS; do
        [ "$transport" = simulator ] && [ "$key" = none ] && continue
        a=$(count "$transport" "$key" "$N1")
        b=$(count "$transport" "$key" "$N2")
        echo "$transport $key: $(( (b - a) / (N2 - N1) )) instructions per signed call ($N1 → $N2 calls: $a → $b)"
    done
done
