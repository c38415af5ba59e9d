#!/usr/bin/env bash
# A real single-node Slurm for the cluster tests (runner/tests/slurm.rs),
# without systemd: `start DIR` writes munge's key and a slurm.conf into DIR,
# starts munged, slurmctld and slurmd by hand (one node with this machine's
# cores and memory; proctrack/linuxproc, task/none, no accounting) and waits
# until the node takes jobs; `stop DIR` ends the three by their pid files.
# Clients find the cluster through SLURM_CONF=DIR/slurm.conf. Debian's
# slurm-wlm and munge are installed first (scripts/setup-slurm.sh).
set -euo pipefail
usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
command=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)

stop() {
    for daemon in slurmd slurmctld munged; do
        if [ -f "$dir/$daemon.pid" ]; then
            pid=$(cat "$dir/$daemon.pid")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$dir/$daemon.pid"
        fi
    done
}

case "$command" in
    stop) stop; exit 0 ;;
    start) ;;
    *) usage ;;
esac

bash "$(dirname "$0")/setup-slurm.sh"
host=$(hostname -s)
cpus=$(nproc)
# slurmd refuses a node that claims more memory than it has: 90% of it.
memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) * 9 / 10 / 1024 ))
# Ports of this cluster, free now: a second cluster (or a system one) on
# the machine keeps its own.
ports=$(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1", 0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')
read -r ctld_port slurmd_port <<<"$ports"
mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
chmod 700 "$dir/munge"

dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
socket="$dir/munge/munge.socket"

cat >"$dir/slurm.conf" <<EOF
# Written by scripts/slurm-cluster.sh for bertlab's cluster tests.
ClusterName=bertlab-test
# Addresses given, so nothing depends on the host name resolving.
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
ReturnToService=2
MpiDefault=none
# Jobs that ended stay visible to squeue for 5 minutes.
MinJobAge=300
KillWait=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

/usr/sbin/munged --socket="$socket" --key-file="$dir/munge/munge.key" --pid-file="$dir/munged.pid" \
    --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" --force
export SLURM_CONF="$dir/slurm.conf"
/usr/sbin/slurmctld -i -f "$SLURM_CONF"
/usr/sbin/slurmd -f "$SLURM_CONF"
for _ in $(seq 120); do
    state=$(sinfo -h -N -o %t 2>/dev/null || true)
    case "$state" in
        idle*|mix*|alloc*) echo "slurm-cluster: node $host up ($cpus CPUs, $memory MB), SLURM_CONF=$SLURM_CONF"; exit 0 ;;
    esac
    sleep 0.5
done
echo "slurm-cluster: the node did not come up within 60 s (state '${state:-none}'); see $dir/slurmctld.log and $dir/slurmd.log" >&2
stop
exit 1
