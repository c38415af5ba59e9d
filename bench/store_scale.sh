#!/usr/bin/env bash
# Does recording a trial cost more in a big run folder? One small trial
# (`bertlab run`, its report included) in a folder that already holds 10 M
# metric points, against the same run in an empty folder, side by side:
# wall time and peak RSS, median of 3 rounds each, and their ratios. The
# big folder is written by the run folder's own trial writer
# (reports/examples/synthetic_run.rs): 5 trials of 1 M steps logging
# train/loss and train/lr every step and eval/loss every 1,000 (what a
# BERT-Base trial with log_every = 1 records), timed too. Then 64 more
# small trials (200 steps) written into each folder, which merges their
# small parts into batches once: the cost of a compaction, side by side.
# A benchmark, not a test.   Usage: bench/store_scale.sh   (after `make build`)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
bin=${BERTLAB:-$target/release/bertlab}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cargo build --quiet --release --workspace --examples
measure() { # label, command...: appends "seconds kilobytes" to $dir/times-$label
    local label=$1; shift
    /usr/bin/time -f "%e %M" -o "$dir/time" "$@" > /dev/null 2> "$dir/stderr" || { cat "$dir/stderr"; exit 1; }
    cat "$dir/time" >> "$dir/times-$label"
}
median() { sort -n | sed -n 2p; }

measure write "$target/release/examples/synthetic_run" "$dir/big" 5 1000000 1000 train/loss,train/lr
read -r write_s write_kb < "$dir/times-write"
points=$(find "$dir/big/trials" -name points.tsv -exec cat {} + | grep -vc '^#')
echo "wrote $points points in 5 trials: ${write_s} s, peak RSS $((write_kb / 1024)) MiB"

cat > "$dir/small.toml" <<'TOML'
[experiment]
name = "small"
[model]
layers = 1
hidden = 32
heads = 2
[data]
corpus = ["experiments/data/*.txt"]
vocab_size = 2000
seq_len = 32
[train]
steps = 20
batch_size = 16
eval_every = 10
device = "cpu"
TOML
# Warm the data cache, so neither side pays for tokenizing.
"$bin" run "$dir/small.toml" --out "$dir/warm" > /dev/null 2>&1
for round in 1 2 3; do
    measure empty "$bin" run "$dir/small.toml" --out "$dir/empty-$round"
    # --fresh: the same trial trained again in the big folder each round.
    measure big "$bin" run "$dir/small.toml" --out "$dir/big" --fresh
done
for side in empty big; do
    read -r "${side}_s" < <(cut -d' ' -f1 "$dir/times-$side" | median)
    read -r "${side}_kb" < <(cut -d' ' -f2 "$dir/times-$side" | median)
done
echo "one 20-step trial, empty folder:  ${empty_s} s, peak RSS $((empty_kb / 1024)) MiB  (rounds: $(cut -d' ' -f1 "$dir/times-empty" | tr '\n' ' '))"
echo "one 20-step trial, 10 M points:   ${big_s} s, peak RSS $((big_kb / 1024)) MiB  (rounds: $(cut -d' ' -f1 "$dir/times-big" | tr '\n' ' '))"
python3 -c "print(f'ratio big/empty: wall {$big_s / $empty_s:.2f}x, peak RSS {$big_kb / $empty_kb:.2f}x')"
measure merge-empty "$target/release/examples/synthetic_run" "$dir/empty-1" 64 200 10 train/loss 1000
measure merge-big "$target/release/examples/synthetic_run" "$dir/big" 64 200 10 train/loss 1000
read -r me_s me_kb < "$dir/times-merge-empty"
read -r mb_s mb_kb < "$dir/times-merge-big"
echo "64 small trials and their compaction, empty folder: ${me_s} s, peak RSS $((me_kb / 1024)) MiB; 10 M points: ${mb_s} s, peak RSS $((mb_kb / 1024)) MiB"
echo "metrics.parquet/ of the 10 M folder: $(ls "$dir/big/metrics.parquet" | grep -c '^batch-') batch, $(ls "$dir/big/metrics.parquet" | grep -vc '^batch-') single parts"
du -sh "$dir/big/metrics.parquet" "$dir/big/trials" | sed 's|'"$dir"'/||'
