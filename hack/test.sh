#!/usr/bin/env bash
# make test: the whole suite on a fresh Debian machine. Installs what it needs, starts the
# local Ceph (hack/with-ceph.sh reuses one that already runs), runs static checks, unit
# tests, real-backend tests, csi-sanity and the control-plane end-to-end test (hack/e2e.sh)
# on every backend, and stops what it started, also on failure.
set -uo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=1 GOFLAGS=-tags=pacific
mkdir -p _output
rm -f _output/gotest-*.json _output/sanity-*.log # counted at the end: this run's only

fail=0
step() { printf '\n== %s\n' "$*"; }
run() { "$@" || { echo "FAILED: $*"; fail=1; }; }

hack/install-deps.sh || exit 1

step "static checks (make verify: gofmt, vet, staticcheck, go mod tidy)"
run hack/verify.sh

step "unit tests (race detector)"
run hack/gotest.sh unit -race -count=1 ./pkg/... ./cmd/...

step "real-backend tests, csi-sanity and end-to-end, with the local Ceph"
# Every missing prerequisite (Ceph, root, ceph-fuse, ganesha, the control-plane tools...) fails
# its test instead of skipping it (harness.Require).
export SHIPHOLD_REQUIRE_STACK=1
# test/sanity runs in hack/sanity.sh (one process per backend); test/e2e in hack/e2e.sh, after
# it has built the control-plane tools, so no test depends on what a cache already holds.
run hack/with-ceph.sh sh -c '
  rc=0
  echo "== real-backend tests (Ceph, OneFS simulator, nfs-ganesha)"
  # -p 4: the long packages (storm, fault, migrate) wait on Ceph and on killed or frozen
  # daemons far more than they compute; four at a time keep make test within its budget.
  hack/gotest.sh backends -p 4 -count=1 -timeout 30m $(go list ./test/... | grep -v -e /test/sanity -e /test/e2e/) || rc=1
  echo "== csi-sanity"
  hack/sanity.sh || rc=1
  echo "== control-plane end-to-end (hack/e2e.sh control-plane; pods on a node: make e2e)"
  hack/e2e.sh control-plane || rc=1
  exit $rc'

if [ -d test/manifests ] && [ -f test/manifests/go.mod ]; then
  step "manifest tests (own module)"
  run env GOFLAGS= hack/gotest.sh manifests -C test/manifests -count=1 ./...
fi

step "skipped tests (go test; allow-list test/allowed-skips.txt)"
run _output/testreport skips -allow test/allowed-skips.txt _output/gotest-*.json
sanity=$(cat _output/sanity-*.log 2>/dev/null | grep -E '^sanity [^ ]+: ' | grep -oE '[0-9]+ skipped' | awk '{n += $1} END {print n + 0}')
echo "csi-sanity specs skipped: $sanity (listed with reasons in test/sanity/SKIPS.md; hack/sanity.sh's own count, not in the one above)"

if [ "$fail" = 0 ]; then
  step "make test: all passed"
else
  step "make test: FAILED (see above)"
fi
exit $fail
