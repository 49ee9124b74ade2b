#!/usr/bin/env bash
# A real single-node Slurm (Debian slurm-wlm + munge) for the Slurm integration tests
# (cli/tests/slurm.rs), following ../shared/notes/slurm.md. Idempotent: a controller that
# already answers with an idle node is left as it is. Run as root. Waits at most
# $SLURM_UP_TIMEOUT seconds (default 60) for `sinfo` to show the node idle; exits 1 otherwise.
# Source-free: the caller exports VOXFLOW_SLURM=1 when this exits 0.
set -euo pipefail
TIMEOUT="${SLURM_UP_TIMEOUT:-60}"
HOST="$(hostname -s)"

node_ready() {
  sinfo -h -N -o '%t' 2>/dev/null | grep -Eq '^(idle|mix|alloc)'
}

if command -v sinfo >/dev/null && node_ready; then
  echo "slurm: already up ($(sinfo -h -N -o '%N %t'))"
  exit 0
fi
for bin in munged slurmctld slurmd sinfo; do
  command -v "$bin" >/dev/null || { echo "slurm-up: $bin not installed (apt-get install -y slurm-wlm munge)" >&2; exit 1; }
done

# munge: a key of 1024 random bytes, owner munge, mode 400.
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  # munged warns about its log file's ownership; harmless.
  su -s /bin/sh munge -c munged 2>/dev/null || munged --force 2>/dev/null || true
  sleep 1
  munge -n | unmunge >/dev/null || { echo "slurm-up: munge does not work" >&2; exit 1; }
fi

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat >/etc/slurm/slurm.conf.new <<EOF
ClusterName=voxflow
SlurmctldHost=${HOST}(127.0.0.1)
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmUser=root
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MinJobAge=300
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=8000 State=UNKNOWN
PartitionName=main Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
EOF
mv /etc/slurm/slurm.conf.new /etc/slurm/slurm.conf

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd

for _ in $(seq "$TIMEOUT"); do
  if node_ready; then
    echo "slurm: up ($(sinfo -h -N -o '%N %t'))"
    exit 0
  fi
  # A node left down/drained by an earlier run comes back.
  scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "slurm-up: the node is not idle after ${TIMEOUT}s:" >&2
sinfo >&2 || true
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
