#!/usr/bin/env bash
# A real SLURM cluster on this machine, for the tests and CI:
#
#   local-cluster.sh start [--nodes N]    (N = 2 by default)
#   local-cluster.sh stop | status
#
# N >= 2: nodes hopfield-node1..N, each a slurmd in its own network namespace (named after the node) with
# its own address $SUBNET.11, .12, ... on a private bridge (hfa-slurm0, $SUBNET.1 on this machine's side),
# and in its own UTS namespace whose hostname is the node's name, as on a real machine. One slurmctld runs
# on this machine, reached at $SUBNET.1. The names resolve through lines this script adds to /etc/hosts
# (one file, read from the host and from every namespace alike). The nodes share this machine's files
# (the Python environment, the run directories), its munge socket (a file) and its CPUs; the bridge has
# no route out, so nothing beyond this machine is contacted.
# N = 1: a single node `slurmd -N localhost` on this machine's own network (no namespaces), for machines
# that do not allow network namespaces.
#
# Needs root and Debian's packages (installed when missing). No systemd: munged runs as user munge, the
# daemons write their PID files, logs and state under $LOCAL_SLURM_DIR (default
# /tmp/hopfield-attention-slurm), never into the repository. The client commands (sbatch, sinfo, ...)
# read /etc/slurm/slurm.conf, so the generated configuration is installed there. Never overwritten or
# removed: a slurm.conf or /etc/hosts line that this script did not write.
# Idempotent: `start` on a running cluster and `stop` on a stopped one do nothing.
set -euo pipefail

RUN_DIR=${LOCAL_SLURM_DIR:-/tmp/hopfield-attention-slurm}
# The first three octets of the bridge's /24: TEST-NET-2 (RFC 5737), never routed anywhere.
SUBNET=${LOCAL_SLURM_SUBNET:-198.51.100}
START_TIMEOUT_S=${LOCAL_SLURM_START_TIMEOUT_S:-60}
SYSTEM_CONF=/etc/slurm/slurm.conf
HOSTS_FILE=/etc/hosts
TEMPLATE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/slurm.conf.in"
MARKER="managed-by: hopfield-attention local-cluster.sh"
MUNGE_SOCKET_DIR=/run/munge
BRIDGE=hfa-slurm0
NODE_PREFIX=hopfield-node
CONTROLLER_ADDR=$SUBNET.1
MAX_NODES=64

log() { echo "local-cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

require_root() {
    [[ $(id -u) == 0 ]] || die "must run as root (SlurmUser=root, daemons started by hand, namespaces)"
}

pid_alive() {  # pid_alive <pidfile>: the file names a live process
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

# -- nodes ----------------------------------------------------------------------------------------------

node_names() {  # node_names <count>: localhost alone, or hopfield-node1 .. hopfield-node<count>
    local count=$1 i
    if ((count == 1)); then echo localhost; return; fi
    for ((i = 1; i <= count; i++)); do echo "$NODE_PREFIX$i"; done
}

node_addr() { echo "$SUBNET.$((10 + ${1#"$NODE_PREFIX"}))"; }  # node_addr hopfield-node<i>: $SUBNET.<10 + i>

configured_nodes() {  # the NodeName of each node in the installed configuration
    [[ -f "$RUN_DIR/slurm.conf" ]] || return 0
    sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$RUN_DIR/slurm.conf"
}

slurmd_pidfile() { echo "$RUN_DIR/slurmd-$1.pid"; }

# -- packages and munge ---------------------------------------------------------------------------------

install_packages() {
    local missing=()
    command -v munged >/dev/null || missing+=(munge)
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v ip >/dev/null || missing+=(iproute2)
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
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
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

# -- configuration --------------------------------------------------------------------------------------

render_config() {  # render_config <node count>: the whole slurm.conf on stdout
    local count=$1 measured cpus memory controller=localhost node where
    # Every node declares the machine's size as slurmd itself measures it (the nodes share its CPUs), so
    # that no slurmd finds its node smaller than declared and a one-node request can use every CPU.
    measured=$(slurmd -C | head -n 1)
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$measured")
    memory=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$measured")
    [[ -n "$cpus" && -n "$memory" ]] || die "could not read CPUs/RealMemory from 'slurmd -C': $measured"
    if ((count > 1)); then controller="localhost($CONTROLLER_ADDR)"; fi
    sed -e "s|@RUN_DIR@|$RUN_DIR|g" -e "s|@SLURMCTLD_HOST@|$controller|g" "$TEMPLATE"
    for node in $(node_names "$count"); do
        where=""
        [[ $node == localhost ]] || where=" NodeHostname=$node NodeAddr=$(node_addr "$node")"
        echo "NodeName=$node$where CPUs=$cpus RealMemory=$memory State=UNKNOWN"
    done
    echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
}

any_daemon_alive() {
    local file
    for file in "$RUN_DIR/slurmctld.pid" "$RUN_DIR"/slurmd*.pid; do pid_alive "$file" && return 0; done
    return 1
}

refuse_to_reconfigure_a_running_cluster() {  # <new config>: a live cluster keeps the configuration it has
    any_daemon_alive || return 0
    cmp -s "$1" "$SYSTEM_CONF" && return 0
    die "a cluster with another configuration is running (nodes: $(configured_nodes | paste -sd ' '));" \
        "run '$0 stop' first"
}

refuse_to_replace_a_foreign_config() {
    if [[ -e "$SYSTEM_CONF" ]] && ! grep -q "$MARKER" "$SYSTEM_CONF"; then
        die "$SYSTEM_CONF exists and was not written by this script; refusing to replace it"
    fi
}

install_config() {  # <new config> -> $RUN_DIR/slurm.conf and /etc/slurm/slurm.conf
    install -m 0644 "$1" "$RUN_DIR/slurm.conf"
    install -d /etc/slurm
    install -m 0644 "$1" "$SYSTEM_CONF"
}

# -- network: a bridge, one namespace per node, /etc/hosts ----------------------------------------------

netns_exists() { ip netns list | awk '{print $1}' | grep -qx -- "$1"; }

our_namespaces() { ip netns list | awk '{print $1}' | grep -x -- "${NODE_PREFIX}[0-9]*" || true; }

refuse_to_take_a_used_network() {  # <node>...: the subnet and the names must be free or already ours
    local used node
    used=$(ip -4 route show root "$SUBNET.0/24" | grep -v " dev $BRIDGE " || true)
    [[ -z "$used" ]] || die "$SUBNET.0/24 is already in use here ($used); choose another: LOCAL_SLURM_SUBNET=<a.b.c>"
    for node in "$@"; do
        if grep -v -- "# $MARKER\$" "$HOSTS_FILE" | grep -qw -- "$node"; then
            die "$HOSTS_FILE already names $node in a line this script did not write; remove it first"
        fi
    done
}

create_bridge() {  # the nodes' switch; this machine's address on it is the controller's
    ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
    ip addr replace "$CONTROLLER_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
}

create_node_namespace() {  # <node>: its network namespace, plugged into the bridge by a veth pair
    local node=$1 veth="hfa-veth${1#"$NODE_PREFIX"}"
    netns_exists "$node" || ip netns add "$node"
    ip link show "$veth" >/dev/null 2>&1 || ip link add "$veth" type veth peer name eth0 netns "$node"
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$node" addr replace "$(node_addr "$node")/24" dev eth0
    ip -n "$node" link set eth0 up
    ip -n "$node" link set lo up
}

hosts_line() { echo "$(node_addr "$1") $1  # $MARKER"; }

add_hosts_entries() {  # <node>...: one marked line per node, unless it is there already
    local node
    for node in "$@"; do
        grep -qxF -- "$(hosts_line "$node")" "$HOSTS_FILE" || hosts_line "$node" >>"$HOSTS_FILE"
    done
    for node in "$@"; do
        [[ $(getent hosts "$node" | awk '{print $1}') == "$(node_addr "$node")" ]] \
            || die "$node does not resolve to $(node_addr "$node") (check /etc/nsswitch.conf)"
    done
}

remove_hosts_entries() {  # only the lines this script marked; rewritten in place (/etc/hosts may be a mount)
    local kept
    grep -q -- "# $MARKER\$" "$HOSTS_FILE" 2>/dev/null || return 0
    kept=$(mktemp)
    grep -v -- "# $MARKER\$" "$HOSTS_FILE" >"$kept" || true
    cat "$kept" >"$HOSTS_FILE"
    rm -f "$kept"
    log "removed this script's lines from $HOSTS_FILE"
}

start_network() {  # <node>...
    local node
    create_bridge
    for node in "$@"; do create_node_namespace "$node"; done
    add_hosts_entries "$@"
}

kill_namespace_processes() {  # <namespace>: whatever is left in it (job steps outliving their slurmd)
    local pids
    mapfile -t pids < <(ip netns pids "$1" 2>/dev/null)
    ((${#pids[@]} > 0)) || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 50); do [[ -z $(ip netns pids "$1" 2>/dev/null) ]] && return 0; sleep 0.1; done
    mapfile -t pids < <(ip netns pids "$1" 2>/dev/null)
    ((${#pids[@]} == 0)) || kill -KILL "${pids[@]}" 2>/dev/null || true
}

stop_network() {
    local ns link
    command -v ip >/dev/null || { remove_hosts_entries; return 0; }  # never started here: no namespaces
    for ns in $(our_namespaces); do
        kill_namespace_processes "$ns"
        ip netns delete "$ns"
        log "deleted network namespace $ns"
    done
    # A namespace's veth pair goes with it; the host ends are removed here in case one outlived it.
    for link in $(ip -o link show | sed -n 's/^[0-9]*: \(hfa-veth[0-9]*\)@.*/\1/p'); do
        ip link delete "$link" 2>/dev/null || true  # gone meanwhile with its namespace: as good
    done
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link delete "$BRIDGE"
        log "deleted bridge $BRIDGE"
    fi
    remove_hosts_entries
}

# -- daemons --------------------------------------------------------------------------------------------

start_slurmd() {  # <node>: localhost on this machine's network, any other inside the node's namespaces
    local node=$1
    pid_alive "$(slurmd_pidfile "$node")" && return 0
    if [[ $node == localhost ]]; then
        slurmd -N localhost
    else
        # nsenter, not `ip netns exec`: that one mounts a fresh /sys without the cgroup tree slurmd reads.
        # A UTS namespace of its own, so that the node's processes see its name as their hostname.
        # shellcheck disable=SC2016  # $1 is expanded by the inner shell
        nsenter --net="/run/netns/$node" unshare --uts -- sh -c 'hostname "$1" && exec slurmd -N "$1"' sh "$node"
    fi
}

node_states() { sinfo --noheader --Node --format='%N %T' 2>/dev/null || true; }

wait_until_idle() {  # <node>...: every node idle (or busy with jobs); drained or down ones are resumed
    local states="" node state ready deadline=$((SECONDS + START_TIMEOUT_S))
    while ((SECONDS < deadline)); do
        states=$(node_states)
        ready=0
        for node in "$@"; do
            state=$(awk -v node="$node" '$1 == node {print $2}' <<<"$states")
            case "$state" in
                idle | mixed | allocated | completing) ready=$((ready + 1)) ;;
                *drain* | down*) scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true ;;
            esac
        done
        ((ready == $#)) && return 0
        sleep 0.5
    done
    die "nodes not idle after ${START_TIMEOUT_S}s (${states:-controller unreachable}); logs in $RUN_DIR/log"
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

# -- commands -------------------------------------------------------------------------------------------

start() {  # <node count>
    local count=$1 nodes node
    require_root
    install_packages
    mapfile -t nodes < <(node_names "$count")
    mkdir -p "$RUN_DIR/state" "$RUN_DIR/log"
    for node in "${nodes[@]}"; do mkdir -p "$RUN_DIR/spool/$node"; done
    render_config "$count" >"$RUN_DIR/slurm.conf.new"
    # Every check before the first change, so that a refusal leaves this machine as it was.
    refuse_to_reconfigure_a_running_cluster "$RUN_DIR/slurm.conf.new"
    refuse_to_replace_a_foreign_config
    if ((count > 1)); then refuse_to_take_a_used_network "${nodes[@]}"; fi
    start_munge
    install_config "$RUN_DIR/slurm.conf.new"
    if ((count > 1)); then start_network "${nodes[@]}"; fi
    # -c: start with an empty queue, so that jobs of an earlier session never occupy the nodes.
    pid_alive "$RUN_DIR/slurmctld.pid" || slurmctld -c
    for node in "${nodes[@]}"; do start_slurmd "$node"; done
    wait_until_idle "${nodes[@]}"
    log "up: $(sinfo --noheader --format='partition %P, %D node(s) %N, %c CPUs each, state %t')"
}

stop() {
    local file node
    require_root
    # slurmd-<node>.pid, and slurmd.pid of a cluster started by an earlier version of this script.
    for file in "$RUN_DIR"/slurmd*.pid; do
        [[ -e $file ]] || continue
        node=$(basename "$file" .pid)
        node=${node#slurmd}
        stop_pidfile "slurmd${node/#-/ }" "$file"
    done
    stop_pidfile slurmctld "$RUN_DIR/slurmctld.pid"
    # Only a munged that this script started; a machine's own munged stays.
    stop_pidfile munged "$RUN_DIR/munge/munged.pid"
    stop_network
}

node_location() {  # <node>: where its slurmd runs, as this machine sees it now
    if [[ $1 == localhost ]]; then echo "this machine's network"; return; fi
    netns_exists "$1" || { echo "its network namespace is missing"; return; }
    echo "network namespace $1, address $(ip -n "$1" -4 -o addr show dev eth0 | awk '{print $4}')"
}

report() {  # report <name> <pidfile> [<detail>]: one line; fails when the daemon is not running
    if pid_alive "$2"; then
        echo "$1: running (pid $(cat "$2")${3:+, $3})"
    else
        echo "$1: stopped"
        return 1
    fi
}

status() {
    local up=0 node nodes
    if pid_alive "$RUN_DIR/munge/munged.pid"; then
        report munged "$RUN_DIR/munge/munged.pid"
    elif munge_works; then
        echo "munged: running (not started by this script)"
    else
        echo "munged: stopped"
        up=3
    fi
    report slurmctld "$RUN_DIR/slurmctld.pid" || up=3
    mapfile -t nodes < <(configured_nodes)
    ((${#nodes[@]} > 0)) || { echo "slurmd: no cluster configured under $RUN_DIR"; return 3; }
    for node in "${nodes[@]}"; do
        report "slurmd $node" "$(slurmd_pidfile "$node")" "$(node_location "$node")" || up=3
    done
    if ((up == 0)); then
        sinfo --Node --long
        squeue
    fi
    return $up
}

usage() {
    echo "usage: $0 start [--nodes N] | stop | status   (N = 2 by default)" >&2
    echo "runtime files under \$LOCAL_SLURM_DIR (default $RUN_DIR); bridge subnet \$LOCAL_SLURM_SUBNET.0/24" >&2
    exit 2
}

main() {
    local command=${1:-} count=2
    (($# > 0)) && shift
    case "$command" in
        start)
            while (($# > 0)); do
                case "$1" in
                    --nodes) count=${2:-}; shift 2 || usage ;;
                    --nodes=*) count=${1#--nodes=}; shift ;;
                    *) usage ;;
                esac
            done
            if ! [[ $count =~ ^[0-9]+$ ]] || ((count < 1 || count > MAX_NODES)); then
                die "--nodes must be a whole number from 1 to $MAX_NODES, got '$count'"
            fi
            [[ $SUBNET =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] \
                || die "LOCAL_SLURM_SUBNET must be the first three numbers of an IPv4 /24 (a.b.c), got '$SUBNET'"
            start "$count"
            ;;
        stop) (($# == 0)) || usage; stop ;;
        status) (($# == 0)) || usage; status ;;
        *) usage ;;
    esac
}

main "$@"
