# syntax=docker/dockerfile:1
# shiphold-csi and shipholdctl: cgo against Debian bookworm's Ceph (Pacific, 16.2) libraries,
# hence -tags pacific for go-ceph; the runtime image carries the userspace tools the node
# plugin runs (rbd/rbd-nbd/ceph-fuse for Ceph, mount.nfs for Isilon, mkfs for block volumes)
# and libnfs, through which shipholdctl migrate reads NFSv3.
#
# The node plugin must run as root (it maps devices and mounts); there is no USER here.
# The controller Deployment runs the same image as non-root through its securityContext
# (runAsNonRoot, runAsUser 65532, read-only root filesystem): see deploy/kubernetes/controller.yaml.

ARG GO_VERSION=1.26.8
ARG DEBIAN_RELEASE=bookworm

# Go toolchain from the official image; the build itself runs on plain Debian so the cgo
# headers and the runtime libraries come from the same release.
FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS go

FROM debian:${DEBIAN_RELEASE} AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates gcc libc6-dev pkg-config git \
      librados-dev librbd-dev libcephfs-dev libnfs-dev \
 && rm -rf /var/lib/apt/lists/*
COPY --from=go /usr/local/go /usr/local/go
ENV PATH=/usr/local/go/bin:/root/go/bin:$PATH \
    CGO_ENABLED=1 \
    GOFLAGS=-buildvcs=false \
    GOTOOLCHAIN=local
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/root/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/root/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -tags pacific -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/ ./cmd/shiphold-csi ./cmd/shipholdctl

FROM debian:${DEBIAN_RELEASE}-slim
# ceph-common: rbd CLI, mount.ceph and the librados/librbd/libcephfs runtime libraries.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates \
      ceph-common ceph-fuse rbd-nbd rbd-fuse \
      nfs-common libnfs13 \
      e2fsprogs xfsprogs \
      util-linux mount \
      tini \
 && rm -rf /var/lib/apt/lists/*
COPY --from=builder /out/shiphold-csi /out/shipholdctl /usr/local/bin/
# tini reaps the rbd-fuse and ceph-fuse daemons the node plugin starts while it runs; -s: with
# hostPID (the node plugin) it is not PID 1, so it registers as a subreaper. The daemons live
# in their own cgroup (--daemon-cgroup): a restart of this container does not take them down.
ENTRYPOINT ["/usr/bin/tini", "-s", "--", "/usr/local/bin/shiphold-csi"]
