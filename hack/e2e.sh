#!/usr/bin/env bash
# e2e.sh [control-plane]: the end-to-end tests. The real shiphold-csi binary behind a real
# Kubernetes control plane and the CSI sidecars (test/e2e/k8s), with the example
# StorageClasses and VolumeSnapshotClasses of deploy/kubernetes, on the local Ceph (RBD,
# CephFS) and the OneFS simulator; then pods on PVCs on a real node (kubelet, containerd,
# runc, the node plugin from the image of hack/image.sh: test/e2e/k8s/NODE.md). Run it under
# hack/with-ceph.sh (make e2e does).
#
#   hack/e2e.sh                 everything (make e2e): the node plugin's image is built (~6.5
#                               min cold, ~1 min warm), TestE2EPods runs (~10 min)
#   hack/e2e.sh control-plane   what make test runs: every test but TestE2EPods, no image, no
#                               kubelet (the pod test does not fit make test's 20 min budget)
#
# Ensures the cached control-plane tools (hack/k8s-tools.sh build: instant when warm, ~25-45
# min cold), builds the driver, then runs the tests of test/e2e (the control-plane smoke test
# and TestE2EControlPlane need the tools: make test runs them here, never before the tools
# are built), and repeats the "e2e ..." lines as a summary. Whatever the outcome, it then
# checks that the node holds nothing of the run (containers, mount daemons, mounts, loop
# devices below /var/lib/kubelet), removes what it finds and fails when it found any.
# Logs: _output/e2e.log (test), _output/e2e-driver.log, _output/e2e-k8s-logs/, metrics:
# _output/e2e-metrics.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=1 GOFLAGS=-tags=pacific
mkdir -p _output

mode=${1:-all}
case "$mode" in
  all | control-plane) ;;
  *) echo "usage: $0 [control-plane]" >&2; exit 2 ;;
esac
tools=() skip=()
if [ "$mode" = control-plane ]; then
  # the node's tools (kubelet, kube-scheduler, node-driver-registrar) are the pod test's only
  tools=(snapshot-crds etcd kube-apiserver kube-controller-manager kubectl
    csi-provisioner csi-attacher csi-resizer csi-snapshotter snapshot-controller)
  skip=(-skip '^TestE2EPods$')
fi

echo "== e2e: control-plane tools (hack/k8s-tools.sh build; log _output/k8s-tools.log)"
if ! hack/k8s-tools.sh build "${tools[@]}" > _output/k8s-tools.log 2>&1; then
  tail -30 _output/k8s-tools.log
  echo "e2e: FAILED to build the control-plane tools"
  exit 1
fi

echo "== e2e: driver (make build)"
make --no-print-directory build || { echo "e2e: FAILED to build the driver"; exit 1; }

# The node plugin's image (hack/image.sh: buildah, debootstrap), built so that it holds this
# source; TestE2EPods runs the plugin from it in the DaemonSet. SHIPHOLD_E2E_IMAGE=0 runs the
# plugin as a host process instead (the pod test's first line says which).
if [ "$mode" = all ] && [ "${SHIPHOLD_E2E_IMAGE:-}" != 0 ]; then
  echo "== e2e: node plugin image (hack/image.sh build; log _output/image.log)"
  t0=$(date +%s)
  if ! hack/image.sh build > _output/image.log 2>&1; then
    tail -30 _output/image.log
    echo "e2e: FAILED to build the node plugin image (SHIPHOLD_E2E_IMAGE=0 runs the plugin as a host process)"
    exit 1
  fi
  echo "e2e: image built in $(( $(date +%s) - t0 ))s"
  export SHIPHOLD_E2E_IMAGE=1
fi

echo "== e2e: test/e2e ($mode: TestControlPlaneSmoke_RealKubernetes, TestE2EControlPlane...; log _output/e2e.log)"
rm -f _output/e2e-summary.txt
start=$(date +%s)
SHIPHOLD_E2E=1 SHIPHOLD_REQUIRE_STACK=1 GOTEST_VERBOSE=1 \
  hack/gotest.sh e2e -count=1 -timeout 60m "${skip[@]}" ./test/e2e/... 2>&1 | tee _output/e2e.log
rc=${PIPESTATUS[0]}

# Also after a failure or a timeout (where the test's cleanups never ran).
go run ./test/e2e/k8s/cmd/nodeleftovers || rc=1

echo
echo "== e2e summary ($(( $(date +%s) - start ))s)"
lines=$(grep -E '^e2e(-pod)? [a-z-]+( [a-z-]+)?: ' _output/e2e.log || true)
if [ -n "$lines" ]; then
  echo "$lines"
else
  echo "(no e2e result lines: the test did not get to the steps; see _output/e2e.log)"
  [ "$rc" = 0 ] && rc=1
fi
if [ "$rc" = 0 ] && echo "$lines" | grep -q ': FAIL'; then rc=1; fi
if [ "$rc" = 0 ]; then echo "e2e: all passed"; else echo "e2e: FAILED"; fi
exit "$rc"
