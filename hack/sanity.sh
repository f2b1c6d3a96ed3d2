#!/usr/bin/env bash
# make sanity: csi-sanity (controller and node tests) against every real backend. Ginkgo runs
# one suite per process, so each backend/access pair is its own go test run; each ends with
# "sanity <backend>/<access>: N passed, N failed, N skipped", repeated here at the end.
# <access> -mnmw runs send csi-sanity's volumes as MULTI_NODE_MULTI_WRITER, where the
# backend offers it (test/sanity/SKIPS.md); -topo limits the backend to labelled nodes.
set -uo pipefail
cd "$(dirname "$0")/.."
export CGO_ENABLED=1 GOFLAGS=-tags=pacific
mkdir -p _output
TARGETS=${SANITY_TARGETS:-"rbd/mount rbd/block rbd/block-mnmw cephfs/mount cephfs/mount-mnmw isilon/mount isilon/mount-mnmw isilon/mount-topo"}
fail=0
summary=()
go test -c -o _output/sanity.test ./test/sanity/ || exit 1
for t in $TARGETS; do
  log=_output/sanity-${t//\//-}.log
  echo "-- sanity $t (log: $log)"
  SANITY_BACKEND=$t SHIPHOLD_REQUIRE_STACK=1 _output/sanity.test -test.timeout 30m -test.v > "$log" 2>&1
  rc=$?
  line=$(grep -E "^sanity $t: " "$log" | tail -1)
  if [ -z "$line" ]; then
    line="sanity $t: did not run (exit $rc)"
    tail -40 "$log"
  fi
  [ $rc -eq 0 ] || { fail=1; grep -E "^\s*\[FAIL\]|^  skipped:" "$log" | head -40; }
  grep -E "^  skipped:" "$log" || true
  summary+=("$line")
done
echo
printf '%s\n' "${summary[@]}"
exit $fail
