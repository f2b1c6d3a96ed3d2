#!/usr/bin/env bash
# make run: the driver's main job on the local default stack. Starts a single-node Ceph
# (unless one runs), the shiphold plugin in all-in-one mode on a unix socket, then walks a
# volume on each Ceph backend through its life with shipholdctl: create, stage, publish,
# write and read a file through the mount, unpublish, unstage, delete. Tears everything down.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${SHIPHOLD_RUN_DIR:-/tmp/shiphold-run}
export SHIPHOLD_CEPH_DIR=${SHIPHOLD_CEPH_DIR:-/tmp/shiphold-ceph}
export CEPH_CONF=$SHIPHOLD_CEPH_DIR/ceph.conf
SOCK=$RUN/csi.sock
BACKENDS=${SHIPHOLD_RUN_BACKENDS:-"local-rbd local-cephfs"}

[ -x bin/shiphold-csi ] && [ -x bin/shipholdctl ] || make build

started_ceph=0
driver_pid=
teardown() {
  set +e
  [ -n "$driver_pid" ] && kill "$driver_pid" 2>/dev/null && wait "$driver_pid" 2>/dev/null
  if [ "$started_ceph" = 1 ]; then
    echo "== stopping the local Ceph"
    hack/micro-ceph.sh down "$SHIPHOLD_CEPH_DIR" >/dev/null 2>&1
  fi
  rm -rf "$RUN"
}
trap teardown EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

rm -rf "$RUN"; mkdir -p "$RUN"
if [ -f "$CEPH_CONF" ] && timeout 15 ceph -s --connect-timeout 5 >/dev/null 2>&1; then
  say "using the Ceph cluster already running at $SHIPHOLD_CEPH_DIR"
else
  say "starting a single-node Ceph at $SHIPHOLD_CEPH_DIR (~20 s)"
  hack/micro-ceph.sh down "$SHIPHOLD_CEPH_DIR" >/dev/null 2>&1 || true
  started_ceph=1
  hack/micro-ceph.sh up "$SHIPHOLD_CEPH_DIR" > "$RUN/micro-ceph.log" 2>&1 || { tail -30 "$RUN/micro-ceph.log"; exit 1; }
fi
FSID=$(awk -F' = ' '/^fsid/ {print $2}' "$CEPH_CONF")

cat > "$RUN/config.yaml" <<YAML
backends:
  - name: local-rbd
    kind: rbd
    rbd:
      clusterID: "$FSID"
      monitors: ["127.0.0.1:6789"]
      pool: rbd
      mounter: auto        # krbd where the kernel has rbd, else rbd-nbd, else rbd-fuse + loop
      credentials: {userID: admin, keyringFile: $SHIPHOLD_CEPH_DIR/ceph.client.admin.keyring}
  - name: local-cephfs
    kind: cephfs
    cephfs:
      clusterID: "$FSID"
      monitors: ["127.0.0.1:6789"]
      fsName: cephfs
      mounter: auto        # kernel CephFS where available, else ceph-fuse
      credentials: {userID: admin, keyringFile: $SHIPHOLD_CEPH_DIR/ceph.client.admin.keyring}
YAML

say "starting shiphold-csi (all-in-one) on unix://$SOCK"
bin/shiphold-csi --mode all --endpoint "unix://$SOCK" --nodeid "$(hostname)" --node-address 127.0.0.1 \
  --config "$RUN/config.yaml" --v 2 > "$RUN/driver.log" 2>&1 &
driver_pid=$!
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { cat "$RUN/driver.log"; exit 1; }

ctl() { echo "\$ shipholdctl csi $*" >&2; bin/shipholdctl csi --endpoint "unix://$SOCK" "$@"; }
admin() { echo "\$ shipholdctl $*" >&2; bin/shipholdctl "$@" --config "$RUN/config.yaml"; }
ctl info
say "the backends, as an admin sees them"
admin backends

for b in $BACKENDS; do
  V=$RUN/$b
  mkdir -p "$V"
  say "$b: create a 256 MiB volume for tenant 'demo'"
  ctl create-volume --name "demo-$b" --backend "$b" --size 256Mi --namespace demo | tee "$V/volume.json"
  say "$b: stage it on this node and publish it to a pod path"
  ctl stage --volume-file "$V/volume.json" --staging-path "$V/staging"
  ctl publish --volume-file "$V/volume.json" --staging-path "$V/staging" --target-path "$V/pod/data"
  say "$b: write a file through the mount and read it back"
  echo "hello from shiphold on $b, $(date -u +%FT%TZ)" > "$V/pod/data/hello.txt"
  sync
  echo "read back: $(cat "$V/pod/data/hello.txt")"
  ctl stats --volume-file "$V/volume.json" --path "$V/pod/data"
  admin tenants
  say "$b: unpublish, unstage, delete"
  ctl unpublish --volume-file "$V/volume.json" --target-path "$V/pod/data"
  ctl unstage --volume-file "$V/volume.json" --staging-path "$V/staging"
  ctl delete-volume --volume-file "$V/volume.json"
done
ctl list-volumes
say "done: every volume created, used and deleted; tearing down"
