#!/bin/bash
# Local userspace NFS server for shiphold: rpcbind + nfs-ganesha (FSAL VFS).
#
#   hack/nfs-server.sh start DIR    start rpcbind (unless one already runs) and ganesha
#   hack/nfs-server.sh stop DIR     stop what "start DIR" started (no orphans)
#   hack/nfs-server.sh status DIR   exit 0 if this DIR's ganesha runs
#
# DIR holds everything of this instance:
#   DIR/ganesha.conf   main config rendered from hack/ganesha.conf.tmpl
#   DIR/exports.conf   EXPORT blocks, %included by ganesha.conf; written by the OneFS
#                      simulator (onefssim --ganesha-conf DIR/exports.conf), starts empty
#   DIR/ganesha.pid    ganesha.nfsd pid: "kill -HUP" reloads exports (ganesha 4.x)
#   DIR/ganesha.log, DIR/ganesha.out, DIR/rpcbind.pid (only if we started rpcbind)
#
# Environment: NFS_BIND_ADDR (default 127.0.0.1), NFS_PORT (12049), MNT_PORT (12048).
# Clients: NFSv3 over TCP, e.g. nfs-cp FILE 'nfs://127.0.0.1/ifs/data/x/f?nfsport=12049&mountport=12048&version=3'
# (NFSv4 writes of 64 KiB+ failed with libnfs here; use v3.)
set -euo pipefail

cmd=${1:-}
dir=${2:-}
if [[ -z "$cmd" || -z "$dir" ]]; then
    echo "usage: $0 start|stop|status DIR" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
BIND=${NFS_BIND_ADDR:-127.0.0.1}
NFS_PORT=${NFS_PORT:-12049}
MNT_PORT=${MNT_PORT:-12048}

alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_pidfile() { # pidfile: TERM, wait up to 10 s, then KILL
    local f=$1 pid i
    [[ -f "$f" ]] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
    fi
    rm -f "$f"
}

case "$cmd" in
start)
    command -v ganesha.nfsd >/dev/null || { echo "ganesha.nfsd not installed (apt-get install nfs-ganesha nfs-ganesha-vfs)" >&2; exit 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if alive "$dir/ganesha.pid"; then echo "ganesha already running (pid $(cat "$dir/ganesha.pid"))"; exit 0; fi
    mkdir -p /var/lib/nfs/ganesha /var/run/ganesha
    [[ -f "$dir/exports.conf" ]] || echo "# no exports yet" > "$dir/exports.conf"
    sed -e "s|@BIND_ADDR@|$BIND|g" -e "s|@NFS_PORT@|$NFS_PORT|g" -e "s|@MNT_PORT@|$MNT_PORT|g" \
        -e "s|@EXPORTS_FILE@|$dir/exports.conf|g" "$here/ganesha.conf.tmpl" > "$dir/ganesha.conf"
    # ganesha registers with rpcbind; reuse a running one, else start our own.
    if ! rpcinfo -p 127.0.0.1 >/dev/null 2>&1; then
        setsid rpcbind -f -w > "$dir/rpcbind.out" 2>&1 < /dev/null &
        echo $! > "$dir/rpcbind.pid"
        for i in $(seq 1 20); do rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && break; sleep 0.1; done
    fi
    setsid ganesha.nfsd -F -L "$dir/ganesha.log" -f "$dir/ganesha.conf" -p "$dir/ganesha.nfsd.pidfile" -N NIV_EVENT \
        > "$dir/ganesha.out" 2>&1 < /dev/null &
    echo $! > "$dir/ganesha.pid"
    for i in $(seq 1 80); do
        if ! alive "$dir/ganesha.pid"; then echo "ganesha exited; see $dir/ganesha.log" >&2; tail -5 "$dir/ganesha.log" >&2 || true; exit 1; fi
        if (exec 3<>"/dev/tcp/$([[ $BIND == 0.0.0.0 ]] && echo 127.0.0.1 || echo "$BIND")/$NFS_PORT") 2>/dev/null; then
            echo "nfs up on $BIND:$NFS_PORT (mountd $MNT_PORT), ganesha pid $(cat "$dir/ganesha.pid"), config $dir/ganesha.conf"
            exit 0
        fi
        sleep 0.25
    done
    echo "ganesha did not come up; see $dir/ganesha.log" >&2
    exit 1
    ;;
stop)
    [[ -d "$dir" ]] || exit 0
    stop_pidfile "$dir/ganesha.pid"
    rm -f "$dir/ganesha.nfsd.pidfile"
    stop_pidfile "$dir/rpcbind.pid"
    echo "nfs stopped ($dir)"
    ;;
status)
    alive "$dir/ganesha.pid"
    ;;
*)
    echo "usage: $0 start|stop|status DIR" >&2
    exit 2
    ;;
esac
