#!/usr/bin/env bash
# Runs the smoke sweep through a real one-node SLURM cluster on localhost and
# checks that its per-patient results equal the local executor's.
# Installs nothing: needs Debian's slurm-wlm and munge (CI: apt-get install -y
# slurm-wlm munge), root (munged/slurmd), and target/release/{petseg,xtask}
# (cargo build --release -p petseg-cli -p xtask). Run from the workspace root.
# Usage: xtask/scripts/slurm-smoke.sh [WORKDIR]
set -euo pipefail
root=$(pwd)
petseg=$root/target/release/petseg
xtask=$root/target/release/xtask
grid=$root/sweeps/smoke.toml
work=$(realpath -m "${1:-$(mktemp -d)}")
mkdir -p "$work"
host=$(hostname -s)
cpus=$(nproc)
mem_mb=$(( $(free -m | awk '/^Mem:/{print $2}') * 9 / 10 ))

# One-node cluster, state and logs under $work/slurm.
s=$work/slurm
mkdir -p "$s/ctld" "$s/d"
cat > "$s/slurm.conf" <<CONF
ClusterName=petseg-ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=$s/ctld
SlurmdSpoolDir=$s/d
SlurmctldPidFile=$s/ctld.pid
SlurmdPidFile=$s/d.pid
SlurmctldLogFile=$s/ctld.log
SlurmdLogFile=$s/d.log
MpiDefault=none
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$s/slurm.conf
[ -f /etc/munge/munge.key ] || /usr/sbin/mungekey -c
mkdir -p /run/munge && chown munge:munge /run/munge
pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged
slurmctld
slurmd
cleanup() {
  [ -f "$s/d.pid" ] && kill "$(cat "$s/d.pid")" 2>/dev/null || true
  [ -f "$s/ctld.pid" ] && kill "$(cat "$s/ctld.pid")" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 1; done
sinfo

prepare() {
  mkdir -p "$1" && cd "$1"
  "$petseg" phantom --out data/smoke --cases 8 --size small --seed 1 >/dev/null 2>&1
  "$xtask" split --manifest data/smoke/manifest.json --out data-manifests/smoke.json --val 3 --seed 1 >/dev/null
}

prepare "$work/local"
"$xtask" sweep --grid "$grid" --petseg "$petseg"

prepare "$work/slurm-run"
"$xtask" sweep --grid "$grid" --executor slurm --petseg "$petseg"
for _ in $(seq 1800); do [ -z "$(squeue -h)" ] && break; sleep 1; done
[ -z "$(squeue -h)" ] || { echo "error: the SLURM job did not finish" >&2; exit 1; }
"$xtask" sweep status --grid "$grid" | tee "$work/slurm-status.txt"
grep -q "2/2 cells done" "$work/slurm-status.txt"

for cell in "$work"/local/results/smoke/*/; do
  name=$(basename "$cell")
  cmp "$cell/patients.csv" "$work/slurm-run/results/smoke/$name/patients.csv"
  echo "same patients.csv: $name"
done
echo "SLURM and local executors agree"
