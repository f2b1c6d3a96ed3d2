#!/usr/bin/env bash
# make run: the driver's main job on the local default stack. Starts a single-node Ceph
# (unless one runs), the OneFS simulator (test/onefssim) for the Isilon backend, the shiphold
# plugin in all-in-one mode on a unix socket, then walks a volume on each backend through its
# life with shipholdctl: create, publish to the node, stage, publish, write and read a file
# through the mount, unpublish, unstage, delete. Then it adopts a legacy Isilon site made
# without shiphold (shipholdctl import) and mounts its data. Tears everything down.
# The simulator serves no NFS here: the plugin bind-mounts an export's directory after
# checking the node is a client (SHIPHOLD_NFS_STANDIN, the tests' stand-in for mount -t nfs).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${SHIPHOLD_RUN_DIR:-/tmp/shiphold-run}
export SHIPHOLD_CEPH_DIR=${SHIPHOLD_CEPH_DIR:-/tmp/shiphold-ceph}
export CEPH_CONF=$SHIPHOLD_CEPH_DIR/ceph.conf
SOCK=$RUN/csi.sock
BACKENDS=${SHIPHOLD_RUN_BACKENDS:-"local-rbd local-cephfs local-isilon"}
IFS_ROOT=$RUN/ifs ISI_PASSWORD=demo-password

[ -x bin/shiphold-csi ] && [ -x bin/shipholdctl ] || make build

started_ceph=0
driver_pid= sim_pid=
teardown() {
  set +e
  [ -n "$driver_pid" ] && kill "$driver_pid" 2>/dev/null && wait "$driver_pid" 2>/dev/null
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
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
MON=$(grep -m1 -o 'v1:[0-9.]*:[0-9]*' "$CEPH_CONF" | sed 's/^v1://' || true)
MON=${MON:-127.0.0.1:6789}

say "starting the OneFS simulator (the Isilon backend's Platform API, /ifs in $IFS_ROOT)"
mkdir -p "$IFS_ROOT"
go build -o "$RUN/onefssim" ./test/onefssim/cmd/onefssim
"$RUN/onefssim" --root "$IFS_ROOT" --listen 127.0.0.1:0 --password "$ISI_PASSWORD" --quiet > "$RUN/onefssim.out" 2>&1 &
sim_pid=$!
for _ in $(seq 50); do grep -q 'listening on' "$RUN/onefssim.out" && break; sleep 0.1; done
ISI_URL=$(sed -n 's/^onefssim listening on //p' "$RUN/onefssim.out")
[ -n "$ISI_URL" ] || { cat "$RUN/onefssim.out"; exit 1; }
printf 'username: admin\npassword: %s\n' "$ISI_PASSWORD" > "$RUN/isilon-credentials"

cat > "$RUN/config.yaml" <<YAML
backends:
  - name: local-rbd
    kind: rbd
    rbd:
      clusterID: "$FSID"
      monitors: ["$MON"]
      pool: rbd
      mounter: auto        # krbd where the kernel has rbd, else rbd-nbd, else rbd-fuse + loop
      credentials: {userID: admin, keyringFile: $SHIPHOLD_CEPH_DIR/ceph.client.admin.keyring}
  - name: local-cephfs
    kind: cephfs
    cephfs:
      clusterID: "$FSID"
      monitors: ["$MON"]
      fsName: cephfs
      mounter: auto        # kernel CephFS where available, else ceph-fuse
      credentials: {userID: admin, keyringFile: $SHIPHOLD_CEPH_DIR/ceph.client.admin.keyring}
  - name: local-isilon
    kind: isilon
    isilon:
      endpoint: "$ISI_URL"
      insecureSkipVerify: true   # the simulator's certificate is self-signed
      isiPath: /ifs/data/shiphold
      nfsServer: 127.0.0.1
      credentialsFile: $RUN/isilon-credentials
YAML

say "starting shiphold-csi (all-in-one) on unix://$SOCK"
SHIPHOLD_NFS_STANDIN=$IFS_ROOT bin/shiphold-csi --mode all --endpoint "unix://$SOCK" --nodeid "$(hostname)" --node-address 127.0.0.1 \
  --config "$RUN/config.yaml" --v 2 > "$RUN/driver.log" 2>&1 &
driver_pid=$!
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { cat "$RUN/driver.log"; exit 1; }

ctl() { echo "\$ shipholdctl csi $*" >&2; bin/shipholdctl csi --endpoint "unix://$SOCK" "$@"; }
admin() { echo "\$ shipholdctl $*" >&2; bin/shipholdctl "$@" --config "$RUN/config.yaml"; }
ctl info | tee "$RUN/info.json"
NODE=$(jq -r .nodeID "$RUN/info.json")
say "the backends, as an admin sees them"
admin backends

# adopt_legacy_site makes a site as the centre's legacy ones are (a directory with data, a
# hard quota and an export, by hand through the Platform API), adopts it in place with
# shipholdctl import, and mounts its data through the plugin by the adopted volume ID.
adopt_legacy_site() {
  local site=/ifs/legacy/site42 A=$RUN/adopted papi=(curl -fsSk -u "admin:$ISI_PASSWORD" -X POST)
  say "adoption: a legacy Isilon site made without shiphold: $site with a 1 GiB quota and an export"
  mkdir -p "$IFS_ROOT/legacy/site42" "$A"
  echo "legacy site 42, made $(date -u +%FT%TZ)" > "$IFS_ROOT/legacy/site42/index.html"
  "${papi[@]}" "$ISI_URL/platform/1/quota/quotas" -d '{"path":"'$site'","type":"directory","enforced":true,"thresholds":{"hard":1073741824}}' > /dev/null
  "${papi[@]}" "$ISI_URL/platform/2/protocols/nfs/exports?zone=System" -d '{"paths":["'$site'"],"read_write_clients":["10.9.9.9"]}' > /dev/null
  say "adoption: shipholdctl import (record, quota and export kept; the PV and PVC to apply)"
  admin import --backend local-isilon --tenant demo "$site" | tee "$A/pv.yaml"
  local id
  id=$(awk '/volumeHandle:/ {print $2}' "$A/pv.yaml")
  say "adoption: the plugin publishes, stages and mounts $id as any shiphold volume"
  ctl publish-controller --volume-id "$id" --node-id "$NODE" --multi-node > /dev/null
  ctl stage --volume-id "$id" --staging-path "$A/staging" --multi-node
  ctl publish --volume-id "$id" --staging-path "$A/staging" --target-path "$A/pod/data" --multi-node
  echo "the legacy data through the mount: $(cat "$A/pod/data/index.html")"
  ctl expand-volume --volume-id "$id" --size 2Gi
  ctl unpublish --volume-id "$id" --target-path "$A/pod/data"
  ctl unstage --volume-id "$id" --staging-path "$A/staging"
  ctl unpublish-controller --volume-id "$id" --node-id "$NODE"
  echo "its PV keeps reclaim policy Retain: no DeleteVolume, the data stays in $site"
}

for b in $BACKENDS; do
  V=$RUN/$b
  mkdir -p "$V"
  say "$b: create a 256 MiB volume for tenant 'demo'"
  ctl create-volume --name "demo-$b" --backend "$b" --size 256Mi --namespace demo | tee "$V/volume.json"
  say "$b: publish it to this node ($NODE), stage it and publish it to a pod path"
  ctl publish-controller --volume-file "$V/volume.json" --node-id "$NODE" > /dev/null
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
  ctl unpublish-controller --volume-file "$V/volume.json" --node-id "$NODE"
  ctl delete-volume --volume-file "$V/volume.json"
done
ctl list-volumes

case " $BACKENDS " in *" local-isilon "*) adopt_legacy_site ;; esac
say "done: every volume created, used and deleted, a legacy site adopted; tearing down"
