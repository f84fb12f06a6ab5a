#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the `slurm` tests and for trying `launcher=slurm`.
#
#   bash scripts/slurm_local.sh start    # install (apt-get, only what is missing), configure, start; idempotent
#   bash scripts/slurm_local.sh status   # the daemons and `sinfo`; exit 1 when the controller does not answer
#   bash scripts/slurm_local.sh stop     # stop slurmd, slurmctld and munged (by their pid files)
#
# Debian/Ubuntu, as root. Debian's slurm-wlm (22.05 on bookworm) and munge; one partition `debug`
# (the default) holding this host with every CPU and its memory as `slurmd -C` reports them, no
# GPUs (no GresTypes), select/cons_tres, proctrack/linuxproc, task/none, no accounting storage
# (`sacct` fails: the `launcher=slurm` config asks squeue instead, see conf/launcher/slurm.yaml).
# The configuration is written to /etc/slurm/slurm.conf only if that file is absent or was written
# by this script: a real cluster's configuration is never touched. Logs: /var/log/slurm/.
# On failure: exit status 1 and one line on stderr saying why.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by scripts/slurm_local.sh (a one-node test cluster)"
LOGS=/var/log/slurm
PARTITION=debug
PACKAGES=(munge slurmctld slurmd slurm-client)

die() {
    echo "slurm_local.sh: $*" >&2
    exit 1
}

# The live process of a pid file whose command is $2, or nothing (a stale file is ignored).
alive() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(tr -dc 0-9 <"$1")
    [[ -n $pid && -r /proc/$pid/comm && $(cat "/proc/$pid/comm") == "$2" ]] || return 1
    echo "$pid"
}

answers() {
    command -v sinfo >/dev/null && timeout 10 sinfo -h >/dev/null 2>&1
}

node_state() {
    timeout 10 sinfo -h -n "$(hostname -s)" -o %T 2>/dev/null | head -1
}

install() {
    local missing=()
    command -v munged >/dev/null || missing+=(munge)
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null || die "cannot install ${missing[*]}: no apt-get (Debian/Ubuntu only)"
    echo "installing ${missing[*]} (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Packages' maintainer scripts must not start the daemons: this script starts them itself.
    local policy=/usr/sbin/policy-rc.d added=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && added=1
    fi
    local log
    log=$(mktemp)
    if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
        ((added)) && rm -f "$policy"
        die "apt-get install ${missing[*]} failed: $(grep -E '^(E|W):' "$log" | tail -1 || tail -1 "$log") (full log: $log)"
    fi
    ((added)) && rm -f "$policy"
    rm -f "$log"
}

configure() {  # sets CHANGED=1 when it wrote a new configuration
    local host node memory
    host=$(hostname -s)
    getent hosts "$host" >/dev/null || die "this host's name $host does not resolve (add it to /etc/hosts)"
    if [[ -e $CONF ]] && ! grep -qxF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script: not touching a real cluster's configuration"
    fi
    # The hardware as slurmd sees it (CPUs, sockets, cores, threads, memory in MB).
    node=$(slurmd -C | head -1)
    [[ $node == NodeName=* ]] || die "slurmd -C did not describe this node: $node"
    memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
    node=$(sed "s/RealMemory=[0-9]*/RealMemory=$((memory * 95 / 100))/" <<<"$node")  # leave the OS its share
    mkdir -p /etc/slurm "$LOGS" /var/spool/slurmctld /var/spool/slurmd
    local new
    new=$(mktemp)
    cat >"$new" <<EOF
$MARK
ClusterName=dearlocal
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
# Preemption and requeue as on a real cluster: a requeued batch job runs again (its begin time is
# pushed back by the controller); SIGTERM, then SIGKILL KillWait seconds later.
JobRequeue=1
KillWait=10
MinJobAge=300
InactiveLimit=0
SlurmdTimeout=60
# No accounting storage (no slurmdbd): sacct fails, squeue answers.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
$node State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    if [[ -e $CONF ]] && cmp -s "$new" "$CONF"; then
        rm -f "$new"
        return
    fi
    mv "$new" "$CONF"
    chmod 644 "$CONF"
    CHANGED=1
}

start_munge() {
    if echo | timeout 5 munge 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1; then
        return 0
    fi
    local key=/etc/munge/munge.key
    mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
    if [[ ! -s $key ]]; then
        dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge "$key" /run/munge /var/lib/munge /var/log/munge
    chmod 400 "$key"
    chmod 700 /etc/munge
    chmod 755 /run/munge
    local pid
    if pid=$(alive /run/munge/munged.pid munged); then  # running but not answering: restart it
        kill "$pid"
        sleep 1
    fi
    rm -f /run/munge/munged.pid /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
    runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
    for _ in $(seq 50); do
        echo | munge 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "munged does not answer (see /var/log/munge/munged.log)"
}

start_daemon() {  # name, pid file, restart (1: the configuration changed)
    local pid
    if pid=$(alive "$2" "$1"); then
        (($3)) || return 0
        kill "$pid"
        for _ in $(seq 100); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
    fi
    rm -f "$2"
    "/usr/sbin/$1" || die "$1 did not start: $(tail -1 "$LOGS/$1.log" 2>/dev/null)"
}

start() {
    [[ $(id -u) == 0 ]] || die "must run as root (it installs packages and starts daemons)"
    install
    CHANGED=0
    configure
    start_munge
    start_daemon slurmctld /run/slurmctld.pid "$CHANGED"
    start_daemon slurmd /run/slurmd.pid "$CHANGED"
    local state=""
    for _ in $(seq 60); do
        state=$(node_state || true)
        case $state in
            idle* | mixed* | allocated* | completing*) break ;;
            down* | drain* | fail*)  # e.g. "unexpectedly rebooted" after a stop: it is back now
                scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    case $state in
        idle* | mixed* | allocated* | completing*) ;;
        *) die "the node is not up (sinfo: '${state:-no answer}'; see $LOGS/slurmctld.log and $LOGS/slurmd.log)" ;;
    esac
    echo "SLURM up: partition $PARTITION, node $(hostname -s) ($state), $(sinfo -h -o '%c CPUs, %m MB')"
}

stop() {
    local pid name file
    for name in slurmd slurmctld; do
        file=/run/$name.pid
        if pid=$(alive "$file" "$name"); then
            kill "$pid"
            for _ in $(seq 100); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
        fi
        rm -f "$file"
    done
    if pid=$(alive /run/munge/munged.pid munged); then
        kill "$pid"
    fi
    echo "SLURM stopped"
}

status() {
    local name file pid
    for name in munged slurmctld slurmd; do
        file=/run/$name.pid
        [[ $name == munged ]] && file=/run/munge/munged.pid
        if pid=$(alive "$file" "$name"); then echo "$name: running (pid $pid)"; else echo "$name: not running"; fi
    done
    answers || die "no SLURM controller answers (sinfo)"
    sinfo
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: bash scripts/slurm_local.sh start|stop|status" ;;
esac
