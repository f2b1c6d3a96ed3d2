#!/usr/bin/env bash
# with-ceph.sh CMD [ARGS...]: runs CMD with the local single-node Ceph up. Reuses a cluster
# that already answers at $SHIPHOLD_CEPH_DIR; otherwise starts one and removes it afterwards,
# also when CMD fails or the run is interrupted. MON_IP (default 127.0.0.1) is the loopback
# address a cluster it starts listens on, so that clusters can run side by side.
set -uo pipefail
cd "$(dirname "$0")/.."
export SHIPHOLD_CEPH_DIR=${SHIPHOLD_CEPH_DIR:-/tmp/shiphold-ceph}
export CEPH_CONF=$SHIPHOLD_CEPH_DIR/ceph.conf
export MON_IP=${MON_IP:-127.0.0.1}
mkdir -p _output
started=0
cleanup() {
  if [ "$started" = 1 ]; then
    echo "with-ceph: stopping the local Ceph"
    hack/micro-ceph.sh down "$SHIPHOLD_CEPH_DIR" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
if [ -f "$CEPH_CONF" ] && timeout 15 ceph -s --connect-timeout 5 >/dev/null 2>&1; then
  echo "with-ceph: reusing the cluster at $SHIPHOLD_CEPH_DIR"
else
  hack/micro-ceph.sh down "$SHIPHOLD_CEPH_DIR" >/dev/null 2>&1 || true
  started=1
  echo "with-ceph: starting a single-node Ceph at $SHIPHOLD_CEPH_DIR on $MON_IP (log: _output/micro-ceph.log)"
  hack/micro-ceph.sh up "$SHIPHOLD_CEPH_DIR" > _output/micro-ceph.log 2>&1 || { tail -30 _output/micro-ceph.log; exit 1; }
  tail -1 _output/micro-ceph.log
fi
"$@"
