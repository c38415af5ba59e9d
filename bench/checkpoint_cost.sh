#!/usr/bin/env bash
# What checkpoints cost, side by side in one call: BERT-Mini's shape (4
# layers, hidden 256, 4 heads, vocab 8192; seq 128, batch 8, fp32) on the
# CPU for 300 steps with a checkpoint every 100 steps and with none,
# alternating, ROUNDS times each; prints the median tokens/s of each and
# their ratio. Then BERT-Base's shape (12 x 768, vocab 30522): the size of
# one checkpoint and the seconds it took to write (`perf/checkpoint_s`).
# A benchmark, not a test. Usage: bench/checkpoint_cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BERTLAB:-target/release/bertlab}
rounds=${ROUNDS:-2}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

cat > "$dir/mini.toml" <<TOML
[experiment]
name = "checkpoint-cost"
[model]
layers = 4
hidden = 256
heads = 4
intermediate = 1024
vocab_size = 8192
[data]
corpus = ["experiments/data/*.txt"]
vocab_size = 8192
seq_len = 128
[train]
steps = 300
batch_size = 8
eval_every = 0
device = "cpu"
precision = "fp32"
TOML
speed() { grep -o '[0-9]* tokens/s' | head -n 1 | cut -d' ' -f1; }
with=(); without=()
for i in $(seq "$rounds"); do
    without+=("$("$bin" run "$dir/mini.toml" --out "$dir/off" --fresh --set train.checkpoint_every=0 2>&1 | speed)")
    with+=("$("$bin" run "$dir/mini.toml" --out "$dir/on" --fresh --set train.checkpoint_every=100 2>&1 | speed)")
done
echo "BERT-Mini shape, tokens/s without checkpoints: ${without[*]}"
echo "BERT-Mini shape, tokens/s with one every 100:  ${with[*]}"
python3 -c "
import statistics as s, sys
off, on = [float(x) for x in sys.argv[1].split()], [float(x) for x in sys.argv[2].split()]
print(f'median {s.median(off):.0f} vs {s.median(on):.0f} tokens/s: checkpoints every 100 steps cost {100 * (1 - s.median(on) / s.median(off)):.2f}% ({s.median(on) / s.median(off):.3f}x)')
" "${without[*]}" "${with[*]}"

# BERT-Base: train until the first checkpoint is in place, then stop.
sed -e 's/^layers = 4/layers = 12/' -e 's/^hidden = 256/hidden = 768/' -e 's/^heads = 4/heads = 12/' \
    -e 's/^intermediate = 1024/intermediate = 3072/' -e 's/^vocab_size = 8192$/vocab_size = 30522/' \
    -e 's/^seq_len = 128/seq_len = 16/' -e 's/^batch_size = 8/batch_size = 2/' -e 's/^steps = 300/steps = 1000/' \
    "$dir/mini.toml" > "$dir/base.toml"
"$bin" run "$dir/base.toml" --out "$dir/base" --set train.checkpoint_every=1 > "$dir/base.log" 2>&1 &
run=$!
until ls "$dir"/base/trials/*/checkpoint-*.safetensors > /dev/null 2>&1; do sleep 0.2; done
kill -TERM "$run"; wait "$run" || true
checkpoint=$(ls "$dir"/base/trials/*/checkpoint-*.safetensors | head -n 1)
seconds=$(grep -P '\tperf/checkpoint_s\t' "$dir"/base/trials/*/points.tsv | head -n 1 | cut -f3)
python3 -c "
import sys
size, seconds = int(sys.argv[1]), float(sys.argv[2])
print(f'BERT-Base shape: one checkpoint is {size / 2**20:.0f} MiB, written in {seconds:.2f} s ({size / 2**20 / seconds:.0f} MiB/s, fsync included)')
" "$(stat -c %s "$checkpoint")" "$seconds"
