#!/usr/bin/env bash
# Installs Debian's slurm-wlm and munge for the cluster tests, which start a
# single-node Slurm of their own (scripts/slurm-cluster.sh). Idempotent;
# needs root or sudo for apt-get the first time.
set -euo pipefail
if [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && [ -x /usr/sbin/munged ] && command -v sbatch >/dev/null; then
    exit 0
fi
bash "$(dirname "$0")/apt-install.sh" setup-slurm "the cluster tests start a single-node Slurm" --no-install-recommends slurm-wlm munge
echo "setup-slurm: $(sbatch --version)"
