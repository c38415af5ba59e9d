#!/usr/bin/env bash
# Training speed of bertlab against stock Hugging Face transformers on the
# same BERT shape: each round runs `bertlab bench`, bench/hf_reference.py
# (eager) and, where enabled, bench/hf_reference.py --compile, rotating the
# order every round so drift (thermals, other load) does not favour one side.
# Raw results go to bench/results/compare-<device>-<date>.jsonl (one line per
# run: round, impl, command, the run's own JSON); then a table of medians and
# the bertlab/transformers ratios is printed. A benchmark, not a test.
#
# Usage: bench/compare.sh [cpu|cuda]   (after `make build`; default cpu)
#   cpu:  BERT-Mini shape (4 x 256, 4 heads, ffn 1024, vocab 8192), seq 128,
#         batch 32, fp32, 20 steps after 5 warm-up; compile off (COMPILE=1
#         turns it on: inductor needs a C++ compiler and warms up slowly)
#   cuda: BERT-Base (12 x 768, 12 heads, ffn 3072, vocab 30522), seq 128,
#         batch 128, bf16, 50 steps after 10 warm-up; compile on (COMPILE=0)
# Environment overrides: ROUNDS (3) LAYERS HIDDEN HEADS INTERMEDIATE VOCAB SEQ
#   BATCH PRECISION STEPS WARMUP COMPILE, THREADS (exports OMP_NUM_THREADS
#   for both sides), BERTLAB (default $CARGO_TARGET_DIR/release/bertlab or
#   target/release/bertlab), BERTLAB_EXTRA (more words for `bertlab bench`),
#   PYTHON (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

device=${1:-cpu}
case $device in
    cpu)  : "${LAYERS:=4}" "${HIDDEN:=256}" "${HEADS:=4}" "${INTERMEDIATE:=1024}" "${VOCAB:=8192}"
          : "${SEQ:=128}" "${BATCH:=32}" "${PRECISION:=fp32}" "${STEPS:=20}" "${WARMUP:=5}" "${COMPILE:=0}" ;;
    cuda) : "${LAYERS:=12}" "${HIDDEN:=768}" "${HEADS:=12}" "${INTERMEDIATE:=3072}" "${VOCAB:=30522}"
          : "${SEQ:=128}" "${BATCH:=128}" "${PRECISION:=bf16}" "${STEPS:=50}" "${WARMUP:=10}" "${COMPILE:=1}" ;;
    *)    echo "usage: bench/compare.sh [cpu|cuda]" >&2; exit 2 ;;
esac
ROUNDS=${ROUNDS:-3}
BERTLAB=${BERTLAB:-${CARGO_TARGET_DIR:-target}/release/bertlab}
PYTHON=${PYTHON:-.venv/bin/python}
[[ -x $BERTLAB ]] || { echo "compare.sh: no bertlab binary at $BERTLAB: run make build first" >&2; exit 1; }
[[ -x $PYTHON ]] || { echo "compare.sh: no python at $PYTHON: run make setup first (or set PYTHON)" >&2; exit 1; }
[[ -n ${THREADS:-} ]] && export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
env_prefix=${THREADS:+OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS }  # for the record of each command

# shellcheck disable=SC2206  # BERTLAB_EXTRA is meant to split into words
bertlab_cmd=("$BERTLAB" bench --set "model.layers=$LAYERS" --set "model.hidden=$HIDDEN" --set "model.heads=$HEADS"
    --set "model.intermediate=$INTERMEDIATE" --set "model.vocab_size=$VOCAB" --set "data.seq_len=$SEQ"
    --set "train.batch_size=$BATCH" --set "train.precision=$PRECISION" --device "$device" --steps "$STEPS" --warmup "$WARMUP"
    --format json ${BERTLAB_EXTRA:-})
hf_cmd=("$PYTHON" bench/hf_reference.py --layers "$LAYERS" --hidden "$HIDDEN" --heads "$HEADS"
    --intermediate "$INTERMEDIATE" --vocab "$VOCAB" --seq "$SEQ" --batch "$BATCH" --precision "$PRECISION"
    --device "$device" --steps "$STEPS" --warmup "$WARMUP")
impls=(bertlab transformers)
[[ $COMPILE == 1 ]] && impls+=(transformers+compile)

command_for() {  # name -> the command, into the array `cmd`
    case $1 in
        bertlab) cmd=("${bertlab_cmd[@]}") ;;
        transformers) cmd=("${hf_cmd[@]}") ;;
        transformers+compile) cmd=("${hf_cmd[@]}" --compile) ;;
    esac
}

mkdir -p bench/results
out=bench/results/compare-$device-$(date +%Y%m%d-%H%M%S).jsonl
trap '[[ -s $out ]] || rm -f "$out"' EXIT  # no empty file left behind by a failed first run
for ((round = 0; round < ROUNDS; round++)); do
    n=${#impls[@]}
    for ((i = 0; i < n; i++)); do
        impl=${impls[(round + i) % n]}
        command_for "$impl"
        echo "round $((round + 1))/$ROUNDS: $impl" >&2
        result=$("${cmd[@]}" | tail -n 1) || { echo "compare.sh: $impl failed: ${cmd[*]}" >&2; exit 1; }
        "$PYTHON" -c 'import json, sys
round_, impl, cmd, text = sys.argv[1:]
try:
    result = json.loads(text)
    assert isinstance(result, dict) and "tokens_per_s" in result
except (ValueError, AssertionError):
    sys.exit(f"compare.sh: {impl} printed no JSON object with tokens_per_s as its last line: {text!r}")
print(json.dumps({"round": int(round_), "impl": impl, "cmd": cmd.strip(), "result": result}))' \
            "$round" "$impl" "$env_prefix$(printf '%q ' "${cmd[@]}")" "$result" >> "$out"
    done
done

"$PYTHON" - "$out" <<'PY'
import json, statistics, sys
from collections import defaultdict

runs = [json.loads(line) for line in open(sys.argv[1])]
by_impl, cmds = defaultdict(list), {}
for run in runs:
    by_impl[run["impl"]].append(run["result"])
    cmds.setdefault(run["impl"], run["cmd"])
med = lambda impl, key: statistics.median(r[key] for r in by_impl[impl]) if all(key in r for r in by_impl[impl]) else None
ref = next(r for impl in by_impl if impl != "bertlab" for r in by_impl[impl])

print(f"\n{ref['device_name']} ({ref['device']}, threads {ref['threads']}) | torch {ref['torch']} | "
      f"transformers {ref['transformers']} | {ref['precision']}, batch {ref['batch']} x seq {ref['seq']}, "
      f"{ref['steps']} steps, {ref['params']:,} params | medians of {len(runs) // len(by_impl)} rounds")
print(f"{'impl':<22}{'tokens/s':>12}{'step ms':>10}{'mfu':>8}{'peak MiB':>10}")
for impl in by_impl:
    mfu, peak = med(impl, "mfu"), med(impl, "peak_memory_bytes")
    print(f"{impl:<22}{med(impl, 'tokens_per_s'):>12,.0f}{med(impl, 'step_ms'):>10.1f}"
          f"{'' if mfu is None else f'{100 * mfu:.1f}%':>8}{'' if peak is None else f'{peak / 2**20:,.0f}':>10}")
for impl in by_impl:
    if impl != "bertlab":
        print(f"bertlab / {impl}: {med('bertlab', 'tokens_per_s') / med(impl, 'tokens_per_s'):.2f}x tokens/s")
print("\ncommands:")
for impl, cmd in cmds.items():
    print(f"  {impl}: {cmd}")
print(f"raw results: {sys.argv[1]}")
PY
