#!/usr/bin/env bash
# make bench-migrate: one tree (10k small files, three 200 MB files) copied to CephFS by
# shipholdctl migrate (libcephfs, with its read-back verification) and, in the same run, by
# rsync -aHAX onto a ceph-fuse mount of an equal volume. Ends with the "bench migrate:" line.
set -uo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=1 GOFLAGS=-tags=pacific SHIPHOLD_BENCH=1 SHIPHOLD_REQUIRE_STACK=1
mkdir -p _output
log=_output/bench-migrate.log
go test -count=1 -timeout 30m -run '^TestMigrateBench$' -v ./test/migrate/ > "$log" 2>&1
rc=$?
[ $rc -eq 0 ] || tail -40 "$log"
grep -E '^\s*bench migrate' "$log" | sed 's/^\s*//'
exit $rc
