#!/usr/bin/env bash
# Sweep throughput: the 8 BERT-Tiny trials of bench/tiny8.toml with --jobs 1,
# then --jobs N, on one device; prints both wall times and their ratio.
# A benchmark, not a test.
#
# Usage: bench/sweep_jobs.sh [DEVICE] [N]   (default: cuda 4; after make build)
set -euo pipefail
cd "$(dirname "$0")/.."
device=${1:-cuda}
jobs=${2:-4}
BERTLAB=${BERTLAB:-${CARGO_TARGET_DIR:-target}/release/bertlab}
[[ -x $BERTLAB ]] || { echo "sweep_jobs.sh: no bertlab binary at $BERTLAB: run make build first" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
times=()
for n in 1 "$jobs"; do
    start=$(date +%s.%N)
    "$BERTLAB" run bench/tiny8.toml --device "$device" --jobs "$n" --out "$out/jobs$n" > "$out/jobs$n.log" 2>&1
    times+=("$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')")
    printf -- '--jobs %-3s %6.1f s\n' "$n" "${times[-1]}"
done
awk -v a="${times[0]}" -v b="${times[1]}" -v n="$jobs" 'BEGIN { printf "ratio       %6.2f (--jobs %s over --jobs 1)\n", b / a, n }'
