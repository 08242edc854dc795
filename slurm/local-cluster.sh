#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for the tests and CI: start | stop | status.
#
# Needs root and Debian's packages (installed when missing). No systemd: munged runs as user munge,
# then slurmctld and `slurmd -N localhost`, each writing its PID file, logs and state under
# $LOCAL_SLURM_DIR (default /tmp/hopfield-attention-slurm), never into the repository. The client
# commands (sbatch, sinfo, ...) read /etc/slurm/slurm.conf, so the generated configuration is installed
# there; a slurm.conf that this script did not write is never overwritten.
# Idempotent: `start` on a running cluster and `stop` on a stopped one do nothing.
set -euo pipefail

RUN_DIR=${LOCAL_SLURM_DIR:-/tmp/hopfield-attention-slurm}
SYSTEM_CONF=/etc/slurm/slurm.conf
TEMPLATE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/slurm.conf.in"
MARKER="managed-by: hopfield-attention local-cluster.sh"
MUNGE_SOCKET_DIR=/run/munge
START_TIMEOUT_S=${LOCAL_SLURM_START_TIMEOUT_S:-60}

log() { echo "local-cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

pid_alive() {  # pid_alive <pidfile>: the file names a live process
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

install_packages() {
    local missing=()
    command -v munged >/dev/null || missing+=(munge)
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The package lists may be missing or stale on a fresh machine: update once and retry.
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
}

munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_works; then
        pid_alive "$RUN_DIR/munge/munged.pid" || log "using the munged already running on this machine"
        return 0
    fi
    [[ -s /etc/munge/munge.key ]] || { mungekey --create --keyfile=/etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key; }
    # munged refuses directories that others can write: its own 0700 directory, owned by munge.
    install -d -o munge -g munge -m 0755 "$MUNGE_SOCKET_DIR"
    install -d -o munge -g munge -m 0700 "$RUN_DIR/munge"
    runuser -u munge -- munged \
        --pid-file="$RUN_DIR/munge/munged.pid" \
        --log-file="$RUN_DIR/munge/munged.log" \
        --seed-file="$RUN_DIR/munge/munged.seed"
    for _ in $(seq 50); do munge_works && return 0; sleep 0.1; done
    die "munged did not come up; see $RUN_DIR/munge/munged.log"
}

write_config() {
    # The node's size as slurmd itself measures it, so that slurmd never finds the node smaller than declared.
    local measured cpus memory
    measured=$(slurmd -C | head -n 1)
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$measured")
    memory=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$measured")
    [[ -n "$cpus" && -n "$memory" ]] || die "could not read CPUs/RealMemory from 'slurmd -C': $measured"
    sed -e "s|@RUN_DIR@|$RUN_DIR|g" -e "s|@CPUS@|$cpus|g" -e "s|@REAL_MEMORY_MB@|$memory|g" \
        "$TEMPLATE" >"$RUN_DIR/slurm.conf"
    if [[ -e "$SYSTEM_CONF" ]] && ! grep -q "$MARKER" "$SYSTEM_CONF"; then
        die "$SYSTEM_CONF exists and was not written by this script; refusing to replace it"
    fi
    install -d /etc/slurm
    install -m 0644 "$RUN_DIR/slurm.conf" "$SYSTEM_CONF"
}

node_state() { sinfo --noheader --Node --format=%T 2>/dev/null | head -n 1 || true; }

wait_until_idle() {
    local state="" deadline=$((SECONDS + START_TIMEOUT_S))
    while ((SECONDS < deadline)); do
        state=$(node_state)
        case "$state" in
            idle | mixed | allocated) return 0 ;;
            *drain* | down*) scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    die "node not idle after ${START_TIMEOUT_S}s (state '${state:-unreachable}'); logs in $RUN_DIR/log"
}

start() {
    [[ $(id -u) == 0 ]] || die "must run as root (SlurmUser=root, daemons started by hand)"
    if pid_alive "$RUN_DIR/slurmctld.pid" && pid_alive "$RUN_DIR/slurmd.pid"; then
        wait_until_idle
        log "already running"
        return 0
    fi
    install_packages
    mkdir -p "$RUN_DIR/state" "$RUN_DIR/spool" "$RUN_DIR/log"
    start_munge
    write_config
    # -c: start with an empty queue, so that jobs of an earlier session never occupy the node.
    pid_alive "$RUN_DIR/slurmctld.pid" || slurmctld -c
    pid_alive "$RUN_DIR/slurmd.pid" || slurmd -N localhost
    wait_until_idle
    log "up: $(sinfo --noheader --format='partition %P, %D node, %c CPUs, state %t')"
}

stop_pidfile() {  # stop_pidfile <name> <pidfile>: TERM, wait, then KILL
    local name=$1 file=$2 pid
    pid_alive "$file" || { rm -f "$file"; return 0; }
    pid=$(cat "$file")
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    rm -f "$file"
    log "stopped $name (pid $pid)"
}

stop() {
    stop_pidfile slurmd "$RUN_DIR/slurmd.pid"
    stop_pidfile slurmctld "$RUN_DIR/slurmctld.pid"
    # Only a munged that this script started; a machine's own munged stays.
    stop_pidfile munged "$RUN_DIR/munge/munged.pid"
}

status() {
    local name file up=0
    for name in munged slurmctld slurmd; do
        file="$RUN_DIR/$name.pid"
        [[ $name == munged ]] && file="$RUN_DIR/munge/munged.pid"
        if pid_alive "$file"; then
            echo "$name: running (pid $(cat "$file"))"
        elif [[ $name == munged ]] && munge_works; then
            echo "munged: running (not started by this script)"
        else
            echo "$name: stopped"
            up=3
        fi
    done
    if ((up == 0)); then
        sinfo
        squeue
    fi
    return $up
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status   (runtime files under \$LOCAL_SLURM_DIR, default $RUN_DIR)" >&2; exit 2 ;;
esac
