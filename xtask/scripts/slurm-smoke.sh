#!/usr/bin/env bash
# Runs the smoke sweep through a real one-node SLURM cluster on localhost,
# followed to its end by `xtask sweep --executor slurm` itself (squeue polls),
# and checks that its per-patient results equal the local executor's; then
# submits a grid whose cells fail and checks that the follow exits non-zero
# naming the failed array tasks, their cells and logs.
# Accounting: Debian's slurm-wlm 22.05 ships accounting_storage/{none,slurmdbd}
# only (no filetxt; jobcomp/filetxt exists but sacct cannot read it), and a
# slurmdbd needs a MariaDB, so this cluster has no accounting: sacct answers
# "Slurm accounting storage is disabled" and the follow takes final states from
# `squeue -t all` (kept MinJobAge seconds after a task ends), else the DONE
# markers.
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
MinJobAge=300
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
# Submits the job array and follows it to its end (non-zero if a task failed).
"$xtask" sweep --grid "$grid" --executor slurm --petseg "$petseg" --poll-secs 2 \
  | tee "$work/slurm-follow.txt"
grep -q "ended: COMPLETED 2" "$work/slurm-follow.txt"
"$xtask" sweep status --grid "$grid" | tee "$work/slurm-status.txt"
grep -q "2/2 cells done" "$work/slurm-status.txt"
[ "$(grep -c "slurm [0-9]*_[01] COMPLETED" "$work/slurm-status.txt")" = 2 ]

# A grid whose cells fail at once (missing manifest), submitted detached and
# re-attached with `sweep follow`: the follow must fail, naming each failed
# task's cell and log.
mkdir -p "$work/broken/sweeps" && cd "$work/broken"
sed 's#^manifest = .*#manifest = "missing.json"#' "$grid" > sweeps/broken.toml
"$xtask" sweep --grid sweeps/broken.toml --executor slurm --petseg "$petseg" --no-follow \
  | tee submit.txt
grep -q "not following it" submit.txt
if "$xtask" sweep follow --grid sweeps/broken.toml --poll-secs 1 > follow.txt 2> err.txt; then
  cat follow.txt err.txt; echo "error: the follow of failing tasks succeeded" >&2; exit 1
fi
cat follow.txt err.txt
grep -q "2 of 2 array tasks of job [0-9]* did not complete" err.txt
grep -q "array task 1 (segresnet__l1dfl__fold0): FAILED" err.txt
grep -q "log $work/broken/results/broken/slurm/[0-9]*_1.out" err.txt
grep -q "last log line: .*reading manifest .*missing.json" err.txt
"$xtask" sweep status --grid sweeps/broken.toml | tee status.txt
[ "$(grep -c "slurm [0-9]*_[01] FAILED (NonZeroExitCode)" status.txt)" = 2 ]

for cell in "$work"/local/results/smoke/*/; do
  name=$(basename "$cell")
  cmp "$cell/patients.csv" "$work/slurm-run/results/smoke/$name/patients.csv"
  echo "same patients.csv: $name"
done
echo "SLURM and local executors agree"
