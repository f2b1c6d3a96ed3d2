#!/usr/bin/env bash
# make test: the whole suite on a fresh Debian machine. Installs what it needs, starts the
# local Ceph (hack/with-ceph.sh reuses one that already runs), runs static checks, unit
# tests, real-backend tests, csi-sanity and the control-plane end-to-end test (hack/e2e.sh)
# on every backend, and stops what it started, also on failure.
set -uo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=1 GOFLAGS=-tags=pacific
mkdir -p _output

fail=0
step() { printf '\n== %s\n' "$*"; }
run() { "$@" || { echo "FAILED: $*"; fail=1; }; }

hack/install-deps.sh || exit 1

step "static checks"
bad=$(gofmt -l cmd pkg test 2>/dev/null)
[ -z "$bad" ] || { echo "gofmt would change:"; echo "$bad"; fail=1; }
run go vet ./...
run "$(go env GOPATH)/bin/staticcheck" ./...

step "unit tests"
run go test -count=1 ./pkg/... ./cmd/...

step "real-backend tests, csi-sanity and end-to-end, with the local Ceph"
# A missing service fails the run instead of skipping its tests.
export SHIPHOLD_REQUIRE_STACK=1
run hack/with-ceph.sh sh -c '
  rc=0
  echo "== real-backend tests (Ceph, OneFS simulator, nfs-ganesha)"
  go test -count=1 -timeout 30m ./test/... || rc=1
  echo "== csi-sanity"
  hack/sanity.sh || rc=1
  echo "== control-plane end-to-end (hack/e2e.sh)"
  hack/e2e.sh || rc=1
  exit $rc'

if [ -d test/manifests ] && [ -f test/manifests/go.mod ]; then
  step "manifest tests (own module)"
  (cd test/manifests && GOFLAGS= go test -count=1 ./...) || { echo "FAILED: manifest tests"; fail=1; }
fi

if [ "$fail" = 0 ]; then
  step "make test: all passed"
else
  step "make test: FAILED (see above)"
fi
exit $fail
