#!/usr/bin/env bash
# make verify: the static checks, in seconds and without a cluster: gofmt, go vet, staticcheck
# and a go.mod/go.sum that go mod tidy would leave unchanged, for the main module and for
# test/manifests (a module of its own). make test runs it as its first step.
set -uo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=1 GOFLAGS=-tags=pacific
staticcheck=$(go env GOPATH)/bin/staticcheck

fail=0
check() { "$@" || { echo "verify FAILED: $*"; fail=1; }; }
tidy() { # tidy DIR: go mod tidy -diff prints what tidy would change and fails on a change
  GOFLAGS= go -C "$1" mod tidy -diff || { echo "go.mod/go.sum in $1 are not tidy: run (cd $1 && go mod tidy)"; return 1; }
}

bad=$(gofmt -l cmd pkg test 2>/dev/null)
[ -z "$bad" ] || { echo "gofmt would change (run gofmt -w):"; echo "$bad"; fail=1; }
check go vet ./...
check "$staticcheck" ./...
check tidy .
if [ -f test/manifests/go.mod ]; then
  check env GOFLAGS= go -C test/manifests vet ./...
  check tidy test/manifests
fi
[ "$fail" = 0 ] && echo "verify: gofmt, vet, staticcheck, tidy clean"
exit $fail
