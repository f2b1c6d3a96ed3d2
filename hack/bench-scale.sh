#!/usr/bin/env bash
# make bench-scale: issue 15's scale run through the real plugin (its own process, its CSI
# socket): 10,000 RBD volumes in one tenant, 2,000 CephFS subvolumes, 2,000 RBD volumes over
# 1,000 tenants, all 1 MiB: create, list every page, time single pages, delete. First the
# plugin's memory, idle and at its peak during a burst of 128 creates. Prints the
# "bench memory:" and "bench scale <backend>:" lines at the end. Counts: see test/scale
# (SHIPHOLD_SCALE_RBD, SHIPHOLD_SCALE_CEPHFS, SHIPHOLD_SCALE_TENANTS, ...). Takes tens of minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=1 GOFLAGS=-tags=pacific SHIPHOLD_BENCH=1 SHIPHOLD_REQUIRE_STACK=1
mkdir -p _output
log=_output/bench-scale.log
echo "load before the bench: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
go test -count=1 -timeout 180m -run '^TestBenchScale$' -v ./test/scale/ > "$log" 2>&1
rc=$?
[ $rc -eq 0 ] || { grep -E '^\s*(--- FAIL|FAIL|.*_test\.go:[0-9]+:)' "$log" | tail -40; }
# Each line is printed when its part ends and all again at the end: show the last set.
grep -E '^bench (scale|memory)' "$log" | awk '!seen[$0]++'
exit $rc
