#!/usr/bin/env bash
# make bench: per backend, CreateVolume and DeleteVolume through the driver's gRPC endpoint
# beside the raw storage calls making the same objects, same size and concurrency, in the
# same process: serial latency (create, delete, the pair) and burst throughput (creates,
# then deletes). One package at a time (-p 1), so no backend is timed under another's load;
# each bench drains the CephFS purge queue and RBD trash before every timed phase. Isilon
# runs against the in-process OneFS simulator, as it is and with 5 ms per request.
# Prints the "bench <backend> ..." lines at the end (README: make bench).
# Sizes: SHIPHOLD_BENCH_SERIAL (50), SHIPHOLD_BENCH_BURST (128), SHIPHOLD_BENCH_CONCURRENCY
# (32), SHIPHOLD_BENCH_ROUNDS (4 bursts per side: driver, raw, raw, driver, twice),
# SHIPHOLD_BENCH_BYTES (1 GiB). Figures mean something only on an otherwise idle machine.
set -uo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=1 GOFLAGS=-tags=pacific SHIPHOLD_BENCH=1 SHIPHOLD_REQUIRE_STACK=1
mkdir -p _output
log=_output/bench.log
echo "load before the bench: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
go test -p 1 -count=1 -timeout 60m -run '^TestBench' -v ./test/rbd/ ./test/cephfs/ ./test/isilon/ > "$log" 2>&1
rc=$?
[ $rc -eq 0 ] || { grep -E '^\s*(--- FAIL|FAIL|.*_test\.go:[0-9]+:)' "$log" | tail -40; }
grep -E '^bench ' "$log"
exit $rc
