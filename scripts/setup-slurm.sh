#!/usr/bin/env bash
# Installs Debian's slurm-wlm and munge for the cluster tests, which start a
# single-node Slurm of their own (scripts/slurm-cluster.sh). Idempotent;
# needs root or sudo for apt-get the first time.
set -euo pipefail
if [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && [ -x /usr/sbin/munged ] && command -v sbatch >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    echo "setup-slurm: Slurm is missing and installing it needs root: run 'sudo apt-get install slurm-wlm munge' (the cluster tests start a single-node Slurm)" >&2
    exit 1
fi
echo "setup-slurm: installing Debian's slurm-wlm and munge (the cluster tests' single-node Slurm)"
export DEBIAN_FRONTEND=noninteractive
install() { "${as_root[@]}" apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null; }
install 2>/dev/null || { "${as_root[@]}" apt-get update -qq >/dev/null; install; }
echo "setup-slurm: $(sbatch --version)"
