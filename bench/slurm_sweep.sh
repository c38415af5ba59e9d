#!/usr/bin/env bash
# The quickstart's 4 trials through a single-node Slurm (scripts/slurm-cluster.sh,
# started and stopped here; tasks of one CPU, two at once, `--wait`) against
# local --jobs 1 and --jobs 2 on the same machine; prints the wall times and
# the ratios to --jobs 1. A benchmark, not a test. Needs root (or sudo) the
# first time, to install Debian's slurm-wlm and munge.
#
# Usage: bench/slurm_sweep.sh   (after make build)
set -euo pipefail
cd "$(dirname "$0")/.."
BERTLAB=$(realpath "${BERTLAB:-${CARGO_TARGET_DIR:-target}/release/bertlab}")
[[ -x $BERTLAB ]] || { echo "slurm_sweep.sh: no bertlab binary at $BERTLAB: run make build first" >&2; exit 1; }
out=$(mktemp -d)
cluster="$out/cluster"
trap 'bash scripts/slurm-cluster.sh stop "$cluster"; rm -rf "$out"' EXIT
bash scripts/slurm-cluster.sh start "$cluster" >/dev/null
export SLURM_CONF="$cluster/slurm.conf" BERTLAB_CACHE_DIR="$out/cache"
# The vocabulary trained once, outside the timings.
"$BERTLAB" run experiments/quickstart.toml --set train.steps=1 --set train.warmup_steps=0 --out "$out/warm" > /dev/null 2>&1
names=() times=()
timed() {
    local name=$1; shift
    local start; start=$(date +%s.%N)
    "$@" > "$out/$name.log" 2>&1
    names+=("$name") times+=("$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')")
    printf -- '%-28s %6.1f s\n' "$name" "${times[-1]}"
}
timed "local --jobs 1" "$BERTLAB" run experiments/quickstart.toml --out "$out/jobs1"
timed "local --jobs 2" "$BERTLAB" run experiments/quickstart.toml --jobs 2 --out "$out/jobs2"
timed "slurm (2 tasks of 1 CPU)" "$BERTLAB" run experiments/quickstart.toml --launcher slurm --wait \
    --set launch.slurm.cpus_per_task=1 --set launch.slurm.max_parallel=2 --out "$out/slurm"
for i in 1 2; do
    awk -v a="${times[0]}" -v b="${times[$i]}" -v n="${names[$i]}" 'BEGIN { printf "ratio %-22s %6.2f (over local --jobs 1)\n", n, b / a }'
done
