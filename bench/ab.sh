#!/usr/bin/env bash
# Two builds of bertlab side by side, alternating in one run so drift (other
# load, thermals) does not favour either: the report of bench/report_500.sh's
# synthetic run folder (500 trials x 200 steps) and the training step of
# bench/compare.sh cpu (BERT-Mini shape, seq 128, batch 32, fp32). Prints the
# medians and the ratios B/A. A benchmark, not a test; used to check that a
# build setting (Cargo.toml's profile) costs no speed.
# Usage: bench/ab.sh A_BINARY B_BINARY   (ROUNDS, default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2
rounds=${ROUNDS:-5}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# Built with the whole workspace's features, as make build and make test
# resolve them: `cargo run -p reports` alone would compile polars again.
cargo build --quiet --release --workspace --examples
"${CARGO_TARGET_DIR:-target}/release/examples/synthetic_run" "$dir/run" 500 200

ms() { local start; start=$(date +%s%N); "$@" > /dev/null; echo $(( ($(date +%s%N) - start) / 1000000 )); }
bench=(bench --set model.layers=4 --set model.hidden=256 --set model.heads=4 --set model.intermediate=1024
    --set model.vocab_size=8192 --set data.seq_len=128 --set train.batch_size=32 --set train.precision=fp32
    --device cpu --steps 20 --warmup 5 --format json)
tokens() { "$1" "${bench[@]}" | tail -n 1 | python3 -c 'import json, sys; print(round(json.load(sys.stdin)["tokens_per_s"]))'; }

declare -A report train
for ((r = 0; r < rounds; r++)); do
    # Alternate which build goes first.
    order=(a b); ((r % 2)) && order=(b a)
    for side in "${order[@]}"; do
        bin=${!side}
        report[$side]+="$(ms "$bin" report "$dir/run") "
        train[$side]+="$(tokens "$bin") "
    done
    echo "round $((r + 1))/$rounds: report ms A ${report[a]}| B ${report[b]}; tokens/s A ${train[a]}| B ${train[b]}" >&2
done
median() { tr ' ' '\n' <<< "$1" | grep . | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ra=$(median "${report[a]}") rb=$(median "${report[b]}") ta=$(median "${train[a]}") tb=$(median "${train[b]}")
echo "report of 500 trials x 200 steps: A ${ra} ms, B ${rb} ms (B/A $(python3 -c "print(f'{$rb / $ra:.3f}')"))"
echo "training step, BERT-Mini on the CPU: A ${ta} tokens/s, B ${tb} tokens/s (B/A $(python3 -c "print(f'{$tb / $ta:.3f}')"))"
