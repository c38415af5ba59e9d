#!/usr/bin/env bash
# Times `bertlab report` on a synthetic run folder of 500 trials × 200
# steps (250 configurations of 5 swept keys, 2 seeds each; 110,000 metric
# points), written by reports/examples/synthetic_run.rs. Prints the median
# of 5 renders and the report's size. A benchmark, not a test.
# Usage: bench/report_500.sh   (after `make build`)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BERTLAB:-${CARGO_TARGET_DIR:-target}/release/bertlab}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# Built with the whole workspace's features, as make build and make test
# resolve them: `cargo run -p reports` alone would compile polars again.
cargo build --quiet --release --workspace --examples
"${CARGO_TARGET_DIR:-target}/release/examples/synthetic_run" "$dir/run" 500 200
times=()
for _ in 1 2 3 4 5; do
    start=$(date +%s%N)
    "$bin" report "$dir/run" > /dev/null
    times+=("$(( ($(date +%s%N) - start) / 1000000 ))")
done
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)
echo "report of 500 trials x 200 steps: median ${median} ms over 5 renders (all, ms: ${times[*]})"
printf 'report.html %s bytes, report.md %s bytes, %s charts\n' "$(stat -c %s "$dir/run/report.html")" "$(stat -c %s "$dir/run/report.md")" "$(ls "$dir/run/report-charts" | wc -l)"
