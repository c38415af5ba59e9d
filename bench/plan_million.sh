#!/usr/bin/env bash
# Times `bertlab plan` on a 1,000,000-trial sweep (a 100 x 100 x 100 grid
# with a derivation and a constraint) and on a 1-trial sweep, and prints
# wall time and peak memory of both: memory should not grow with the trial
# count (both are dominated by loading libtorch). A benchmark, not a test.
# Usage: bench/plan_million.sh   (after `make build`)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BERTLAB:-target/release/bertlab}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

python3 - "$dir" <<'PY'
import sys
out = sys.argv[1]
head = '[experiment]\nname = "{}"\n[data]\ncorpus = ["experiments/data/*.txt"]\n'
axis = lambda values: "[" + ", ".join(values) + "]"
grid = (
    '[sweep.grid]\n'
    f'"train.lr" = {axis(f"{i}e-6" for i in range(1, 101))}\n'
    f'"model.dropout" = {axis(f"{i / 500:.3f}" for i in range(100))}\n'
    f'"train.warmup_steps" = {axis(str(i) for i in range(100))}\n'
    '[derive]\n"model.intermediate" = "4 * model.hidden"\n'
    '[constraints]\nrequire = ["train.warmup_steps < train.steps"]\n'
)
open(f"{out}/million.toml", "w").write(head.format("million") + grid)
open(f"{out}/one.toml", "w").write(head.format("one"))
PY

measure() {
    /usr/bin/time -f "%e %M" "$bin" plan "$1" > "$dir/out.txt" 2> "$dir/time.txt" || { cat "$dir/time.txt"; exit 1; }
    read -r wall kb < <(tail -n 1 "$dir/time.txt")
    rows=$(grep -c '^| [0-9a-f]' "$dir/out.txt" || true)
    printf '%-12s %8s trials  %6.2f s  %5d MiB peak\n' "$(basename "$1" .toml)" "$rows" "$wall" $((kb / 1024))
}
echo "bertlab plan on $(nproc) cores"
measure "$dir/one.toml"
measure "$dir/million.toml"
