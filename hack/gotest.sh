#!/usr/bin/env bash
# gotest.sh NAME [-C DIR] [GO TEST ARGS...]: go test -json, read by test/harness/cmd/testreport.
# Prints what plain go test prints plus every skipped test with its reason (GOTEST_VERBOSE=1:
# everything, as go test -v), keeps the stream in _output/gotest-NAME.json for the skip
# count at the end of make test, and exits non-zero when go test failed.
set -uo pipefail
cd "$(dirname "$0")/.."
name=$1; shift
mkdir -p _output
out=$PWD/_output
GOFLAGS= CGO_ENABLED=0 go build -o "$out/testreport" ./test/harness/cmd/testreport || exit 1
dir=()
if [ "${1:-}" = -C ]; then dir=(-C "$2"); shift 2; fi
verbose=()
[ "${GOTEST_VERBOSE:-0}" = 1 ] && verbose=(-v)
go test "${dir[@]}" -json "$@" 2>&1 | "$out/testreport" render "${verbose[@]}" -save "$out/gotest-$name.json"
