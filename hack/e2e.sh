#!/usr/bin/env bash
# e2e.sh: the end-to-end tests (make e2e). The real shiphold-csi binary behind a real
# Kubernetes control plane and the CSI sidecars (test/e2e/k8s), with the example
# StorageClasses and VolumeSnapshotClasses of deploy/kubernetes, on the local Ceph (RBD,
# CephFS) and the OneFS simulator; then pods on PVCs on a real node (kubelet, containerd,
# runc: test/e2e/k8s/NODE.md). Run it under hack/with-ceph.sh (make e2e does).
#
# Ensures the cached control-plane tools (hack/k8s-tools.sh build: instant when warm, ~25-45
# min cold), builds the driver, then runs the tests of test/e2e (the control-plane smoke test
# and TestE2EControlPlane need the tools: make test runs them here, never before the tools
# are built), and repeats the "e2e ..." lines as a summary. Logs: _output/e2e.log (test),
# _output/e2e-driver.log, _output/e2e-k8s-logs/, metrics: _output/e2e-metrics.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=1 GOFLAGS=-tags=pacific
mkdir -p _output

echo "== e2e: control-plane tools (hack/k8s-tools.sh build; log _output/k8s-tools.log)"
if ! hack/k8s-tools.sh build > _output/k8s-tools.log 2>&1; then
  tail -30 _output/k8s-tools.log
  echo "e2e: FAILED to build the control-plane tools"
  exit 1
fi

echo "== e2e: driver (make build)"
make --no-print-directory build || { echo "e2e: FAILED to build the driver"; exit 1; }

# The node plugin's image (hack/image.sh: buildah, debootstrap): rebuilt, so that it holds this
# source, when its cache exists (a first build, ~6 min cold, is `hack/image.sh build`); then
# TestE2EPods runs the plugin from it in the DaemonSet, else as a host process.
IMAGE_CACHE="${SHIPHOLD_IMAGE_CACHE:-$HOME/.cache/shiphold/image}"
if [ "${SHIPHOLD_E2E_IMAGE:-}" != 0 ] && [ -e "$IMAGE_CACHE/rootfs-bookworm/.done" ]; then
  echo "== e2e: node plugin image (hack/image.sh build; log _output/image.log)"
  t0=$(date +%s)
  if ! hack/image.sh build > _output/image.log 2>&1; then
    tail -30 _output/image.log
    echo "e2e: FAILED to build the node plugin image (SHIPHOLD_E2E_IMAGE=0 runs the plugin as a host process)"
    exit 1
  fi
  echo "e2e: image built in $(( $(date +%s) - t0 ))s"
else
  echo "== e2e: no node plugin image cached (hack/image.sh build makes one): the node plugin runs as a host process"
  export SHIPHOLD_E2E_IMAGE=0
fi

echo "== e2e: test/e2e (TestControlPlaneSmoke_RealKubernetes, TestE2EControlPlane...; log _output/e2e.log)"
rm -f _output/e2e-summary.txt
start=$(date +%s)
SHIPHOLD_E2E=1 SHIPHOLD_REQUIRE_STACK=1 GOTEST_VERBOSE=1 \
  hack/gotest.sh e2e -count=1 -timeout 60m ./test/e2e/... 2>&1 | tee _output/e2e.log
rc=${PIPESTATUS[0]}

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
