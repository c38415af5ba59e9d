#!/usr/bin/env bash
# Training on several devices (train.devices), side by side in one call.
# A benchmark, not a test. Usage: bench/devices.sh [cpu|cuda]
#
# cpu: BERT-Mini's shape (4 x 256, seq 128, batch 16, fp32), `bertlab bench`
#   on one rank with every thread, on two ranks with half the threads each,
#   and on one rank with half the threads (what each of the two has):
#   tokens/s of each, alternating ROUNDS times, medians and ratios.
# cuda: on a GPU machine (NCCL): one rank through torchrun's process group
#   against one device, losses compared step by step; BERT-Base bf16 at a
#   batch that does not fit, which must recover by halving; tokens/s of an
#   accumulated step (4 x 32) against the plain batch of 128; and, with
#   two GPUs or more, train.devices = 2 against 1.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BERTLAB:-target/release/bertlab}
mode=${1:-cpu}
rounds=${ROUNDS:-3}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
median() { python3 -c 'import statistics, sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
tokens() { "$bin" bench "$@" --format json | python3 -c 'import json, sys; print(json.loads(sys.stdin.read().splitlines()[-1])["tokens_per_s"])'; }

if [ "$mode" = cpu ]; then
    threads=$(nproc)
    mini=(--device cpu --set model.layers=4 --set model.hidden=256 --set model.heads=4 --set model.intermediate=1024
          --set model.vocab_size=8192 --set data.seq_len=128 --set train.batch_size=16 --set train.precision=fp32 --steps 10 --warmup 3)
    one=(); two=(); half=()
    for _ in $(seq "$rounds"); do
        one+=("$(OMP_NUM_THREADS=$threads tokens "${mini[@]}")")
        two+=("$(OMP_NUM_THREADS=$threads tokens "${mini[@]}" --set train.devices=2)")
        half+=("$(OMP_NUM_THREADS=$((threads / 2)) tokens "${mini[@]}")")
    done
    m1=$(median "${one[@]}"); m2=$(median "${two[@]}"); mh=$(median "${half[@]}")
    echo "BERT-Mini shape on $threads CPU threads, tokens/s: one rank ${one[*]}; two ranks ${two[*]}; one rank on $((threads / 2)) threads ${half[*]}"
    python3 -c "
import sys
one, two, half = map(float, sys.argv[1:])
print(f'two ranks / one rank: {two / one:.3f}x; two ranks / one rank on half the threads: {two / half:.3f}x (2.0 = no cost for the gradient exchange)')
" "$m1" "$m2" "$mh"
    exit 0
fi

[ "$mode" = cuda ] || { echo "usage: $0 [cpu|cuda]" >&2; exit 2; }
torchrun=${TORCHRUN:-$(python3 -c 'import shutil; print(shutil.which("torchrun") or "torchrun")')}
gpus=$(nvidia-smi --list-gpus | wc -l)
cat > "$dir/e.toml" <<TOML
[experiment]
name = "devices"
[model]
layers = 4
hidden = 256
heads = 4
dropout = 0.0
attention_dropout = 0.0
[data]
corpus = ["experiments/data/*.txt"]
vocab_size = 4000
seq_len = 128
[train]
steps = 50
batch_size = 32
eval_every = 25
device = "cuda"
precision = "fp32"
TOML
compare() {
    python3 - "$1" "$2" <<'PY'
import sys, polars as pl
a, b = (pl.read_parquet(f"{d}/metrics.parquet") for d in sys.argv[1:])
for key in ["train/loss", "eval/loss"]:
    x, y = (f.filter(pl.col("key") == key).sort("step")["value"].to_list() for f in (a, b))
    worst = max(abs(p - q) / abs(p) for p, q in zip(x, y))
    print(f"{key}: {len(x)} points, largest relative difference {worst:.2e} ({'within' if worst <= 1e-5 and len(x) == len(y) else 'NOT within'} 1e-5)")
PY
}
"$bin" run "$dir/e.toml" --out "$dir/one" > /dev/null 2>&1
"$torchrun" --nproc-per-node 1 --no-python "$bin" run "$dir/e.toml" --out "$dir/nccl1" > "$dir/nccl1.log" 2>&1 || { tail "$dir/nccl1.log"; exit 1; }
echo "NCCL, one rank under torchrun, against one device:"; compare "$dir/one" "$dir/nccl1"
if [ "$gpus" -ge 2 ]; then
    "$bin" run "$dir/e.toml" --out "$dir/two" --set train.devices=2 > /dev/null 2>&1
    echo "train.devices = 2 against 1:"; compare "$dir/one" "$dir/two"
fi

base=(--device cuda --set model.layers=12 --set model.hidden=768 --set model.heads=12 --set model.intermediate=3072
      --set model.vocab_size=30522 --set data.seq_len=128 --set train.precision=bf16 --steps 10 --warmup 3)
echo "BERT-Base bf16, seq 128, tokens/s: batch 128 plain, then 4 x 32 accumulated, alternating:"
plain=(); accumulated=()
for _ in $(seq "$rounds"); do
    plain+=("$(tokens "${base[@]}" --set train.batch_size=128)")
    accumulated+=("$(tokens "${base[@]}" --set train.batch_size=128 --set train.micro_batch_size=32)")
done
echo "plain ${plain[*]}; accumulated ${accumulated[*]}: ratio $(python3 -c "import sys; print(round(float(sys.argv[2]) / float(sys.argv[1]), 3))" "$(median "${plain[@]}")" "$(median "${accumulated[@]}")")"

# A batch that does not fit: the step runs again halved until it does.
sed -e 's/^layers = 4/layers = 12/' -e 's/^hidden = 256/hidden = 768/' -e 's/^heads = 4/heads = 12/' -e 's/^steps = 50/steps = 3/' \
    -e 's/^batch_size = 32/batch_size = 16384/' -e 's/^precision = "fp32"/precision = "bf16"/' -e 's/^eval_every = 25/eval_every = 0/' \
    "$dir/e.toml" > "$dir/oom.toml"
"$bin" run "$dir/oom.toml" --out "$dir/oom" > "$dir/oom.log" 2>&1 || true
grep -o 'out of memory with micro-batches of [0-9]*: the step runs again with micro-batches of [0-9]*' "$dir/oom.log" || echo "no out-of-memory retry (batch 16384 fitted?)"
python3 -c "
import polars as pl
t = pl.read_parquet('$dir/oom/trials.parquet')
print('status', t['status'].to_list(), 'train/micro_batch_size', t['train/micro_batch_size'].to_list() if 'train/micro_batch_size' in t.columns else None)
"
