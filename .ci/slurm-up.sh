#!/usr/bin/env bash
# Start a one-node Slurm cluster on this machine, as root: munged, slurmctld and slurmd, with a
# slurm.conf generated for this host's short name, CPU count and memory. Developers run it too:
#   sudo .ci/slurm-up.sh          # then: srun hostname; pytest -m slurm
# It installs Debian's slurm-wlm and munge when they are missing, and is safe to run twice.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "slurm-up: run as root (it writes /etc/slurm and starts daemons)" >&2
    exit 2
fi
if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    echo "slurm-up: installing slurm-wlm and munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

host=$(hostname -s)
cpus=$(nproc)
# Leave the system a tenth of the memory: slurmd refuses a node that claims more than it has.
memory_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
chown slurm:slurm /var/spool/slurmctld /var/log/slurm 2>/dev/null || true

cat >/etc/slurm/slurm.conf <<EOF
# Written by greenprec's .ci/slurm-up.sh: a one-node cluster for tests.
ClusterName=greenprec-ci
SlurmctldHost=${host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerType=sched/backfill
# No accounting daemon: sacct does not work; a finished job stays in scontrol this long (s).
MinJobAge=600
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=${host} CPUs=${cpus} RealMemory=${memory_mb} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
# No cgroup.conf: proctrack/linuxproc and task/none need none (and a container has no
# cgroup delegation to give slurmd).
rm -f /etc/slurm/cgroup.conf

if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
chmod 0755 /run/munge

if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged
fi
pkill -x slurmctld 2>/dev/null || true
pkill -x slurmd 2>/dev/null || true
sleep 1
/usr/sbin/slurmctld -c   # -c: a clean start, without state from an earlier cluster
/usr/sbin/slurmd

# Bounded wait: the node must come up idle and run a job.
for _ in $(seq 1 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        break
    fi
    scontrol update nodename="${host}" state=resume >/dev/null 2>&1 || true
    sleep 1
done
if ! timeout 60 srun --quiet -N1 hostname >/dev/null; then
    echo "slurm-up: srun hostname failed; see /var/log/slurm/*.log" >&2
    exit 1
fi
echo "slurm-up: one-node cluster '${host}' with ${cpus} CPUs is up (sinfo, srun, sbatch work)"
