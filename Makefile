# shiphold: a CSI driver for Ceph RBD, CephFS and Dell PowerScale (Isilon) NFS.
# go-ceph needs cgo and builds against Debian's Ceph 16.2 (pacific) headers.
export CGO_ENABLED := 1
export GOFLAGS := -tags=pacific
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

.PHONY: all help build deps verify unit test sanity bench bench-migrate bench-scale run e2e clean

all: build

## help: list the targets with what they do
help:
	@awk '/^## [a-z0-9-]+:/ { sub(/^## /, ""); t = $$0; sub(/:.*/, "", t); sub(/^[^:]*: */, ""); printf "  %-7s %s\n", t, $$0; next } \
	     /^## / { sub(/^## */, ""); printf "  %-7s %s\n", "", $$0 }' $(MAKEFILE_LIST)

## build: the plugin and the admin CLI, into bin/
build:
	go build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...

## deps: install what building and testing need (apt packages, Go modules)
deps:
	hack/install-deps.sh

## verify: static checks, no cluster: gofmt, go vet, staticcheck, go.mod/go.sum tidy (both modules)
verify:
	hack/verify.sh

## unit: unit tests only (fakes; seconds), under the race detector
unit:
	go test -race ./pkg/... ./cmd/...

## test: everything: static checks, unit, real-backend tests, csi-sanity on every backend
test:
	hack/test.sh

## sanity: csi-sanity against the local Ceph and the OneFS simulator
sanity: deps
	hack/with-ceph.sh hack/sanity.sh

## bench: CreateVolume+DeleteVolume latency and burst throughput per backend
bench: deps
	hack/with-ceph.sh hack/bench.sh

## bench-scale: 10,000 RBD volumes, 2,000 CephFS subvolumes and 1,000 tenants through the real
## plugin: create, list, page, delete; and the plugin's memory idle and in a burst (tens of minutes)
bench-scale: deps
	hack/with-ceph.sh hack/bench-scale.sh

## bench-migrate: shipholdctl migrate against rsync -aHAX onto ceph-fuse, one tree, same run
bench-migrate: deps
	hack/with-ceph.sh hack/bench-migrate.sh

## e2e: the real driver behind a real Kubernetes control plane and the CSI sidecars, with the
## example classes of deploy/kubernetes, on every backend; then pods on PVCs on a real node
## (kubelet, containerd, the node plugin from its image: test/e2e/k8s/NODE.md). make test runs
## the control-plane part only. Warm ~14 min; cold: +25-45 min tools, +~6.5 min image
e2e: deps build
	hack/with-ceph.sh hack/e2e.sh

## run: start the local stack (Ceph, OneFS simulator) and the driver, walk a volume per backend
## through its life, and adopt a legacy Isilon site (shipholdctl import)
run: deps build
	hack/run-local.sh

## clean: remove bin/ and _output/
clean:
	rm -rf bin _output
