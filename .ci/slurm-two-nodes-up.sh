#!/usr/bin/env bash
# Start a second Slurm cluster of TWO nodes on this one machine, beside the one-node cluster of
# .ci/slurm-up.sh (run that first: it installs Slurm and starts munged). Debian's slurm-wlm is
# built with --enable-multiple-slurmd, so two slurmd on their own ports are two nodes; the
# second is named "localhost", a name that also resolves to this machine. Prints the
# slurm.conf to pass as GREENPREC_TEST_SLURM_TWO_NODES (tests/test_distributed_runs.py).
# As root; safe to run twice.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "slurm-two-nodes-up: run as root (it starts Slurm daemons)" >&2
    exit 2
fi
# (Read whole, then matched: grep -q would end the pipe early, a failure under pipefail.)
config=$(scontrol show config 2>/dev/null || true)
if ! grep -q "MULTIPLE_SLURMD *= *Yes" <<<"$config"; then
    echo "slurm-two-nodes-up: this Slurm is not built with --enable-multiple-slurmd" >&2
    exit 3
fi

root=/tmp/greenprec-two
host=$(hostname -s)
conf=$root/slurm.conf
# Stop a cluster an earlier call started (by its own pid files: never the one-node cluster).
for pid_file in "$root"/slurmctld.pid "$root"/slurmd-*.pid; do
    [ -s "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null || true
done
sleep 1
rm -rf "$root"
mkdir -p "$root/state" "$root/spool/$host" "$root/spool/localhost"

cat >"$conf" <<CONF
# Written by greenprec's .ci/slurm-two-nodes-up.sh: two nodes on one machine, for tests.
ClusterName=greenprec-two
SlurmctldHost=${host}
SlurmctldPort=6917
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=${root}/state
SlurmdSpoolDir=${root}/spool/%n
SlurmctldPidFile=${root}/slurmctld.pid
SlurmdPidFile=${root}/slurmd-%n.pid
SlurmctldLogFile=${root}/slurmctld.log
SlurmdLogFile=${root}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=600
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
NodeName=${host} NodeHostname=${host} Port=17001 CPUs=1 RealMemory=1000 State=UNKNOWN
NodeName=localhost NodeHostname=${host} Port=17002 CPUs=1 RealMemory=1000 State=UNKNOWN
PartitionName=two Nodes=${host},localhost Default=YES MaxTime=INFINITE State=UP
CONF

export SLURM_CONF=$conf
/usr/sbin/slurmctld -f "$conf" -i
/usr/sbin/slurmd -f "$conf" -N "$host"
/usr/sbin/slurmd -f "$conf" -N localhost

# Bounded wait: both nodes idle.
for _ in $(seq 1 60); do
    if [ "$(sinfo -h -o '%T %D' 2>/dev/null | awk '$1 == "idle" {n += $2} END {print n + 0}')" = 2 ]; then
        echo "$conf"
        exit 0
    fi
    sleep 1
done
echo "slurm-two-nodes-up: the two nodes did not come up idle within 60 s (see $root/*.log)" >&2
exit 1
