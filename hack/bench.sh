#!/usr/bin/env bash
# make bench: per-backend CreateVolume+DeleteVolume latency (serial) and throughput (128
# volumes, 32 at a time), each beside the raw storage API in the same process where one
# exists. Prints the "bench <backend> ..." lines at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=1 GOFLAGS=-tags=pacific SHIPHOLD_BENCH=1 SHIPHOLD_REQUIRE_STACK=1
mkdir -p _output
log=_output/bench.log
go test -count=1 -timeout 30m -run 'Bench' -v ./test/rbd/ ./test/cephfs/ ./test/isilon/ > "$log" 2>&1
rc=$?
[ $rc -eq 0 ] || tail -40 "$log"
grep -E '^\s*bench ' "$log" | sed 's/^\s*//'
exit $rc
