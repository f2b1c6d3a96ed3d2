#!/usr/bin/env bash
# image.sh: build the Dockerfile here, without a daemon and without a registry: buildah on base
# images made locally (a Debian bookworm root filesystem from debootstrap against the Debian
# archive, and the installed Go toolchain copied onto it under the name the Dockerfile asks
# for), then save the image as an OCI archive that `ctr images import` reads.
#
#   hack/image.sh build   [TAG]   build localhost/shiphold-csi:TAG (default: e2e); prints timings
#   hack/image.sh archive [TAG]   print the OCI archive's path (built by "build")
#
# Cache: ${SHIPHOLD_IMAGE_CACHE:-$HOME/.cache/shiphold/image}: the debootstrap root filesystem
# (kept across runs) and the archives. buildah keeps its layers and the Dockerfile's
# --mount=type=cache directories (Go modules and build cache) in its own storage, so a second
# build only redoes what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${SHIPHOLD_IMAGE_CACHE:-$HOME/.cache/shiphold/image}"
DEBIAN_RELEASE=bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
GOROOT_HOST=$(go env GOROOT)
GO_VERSION=$(go env GOVERSION); GO_VERSION=${GO_VERSION#go}
TAG=${2:-e2e}
IMAGE=localhost/shiphold-csi:$TAG
ARCHIVE=$CACHE/shiphold-csi-$TAG.oci.tar

log() { printf '[image %s] %s\n' "$(date +%T)" "$*" >&2; }

need() {
  local missing=()
  for c in buildah debootstrap; do command -v "$c" >/dev/null || missing+=("$c"); done
  if ((${#missing[@]})); then
    log "missing ${missing[*]}: apt-get install buildah debootstrap"
    exit 1
  fi
}

# base_images: debian:bookworm(-slim) from debootstrap, golang:<go>-bookworm = it + the host's Go.
base_images() {
  local rootfs=$CACHE/rootfs-$DEBIAN_RELEASE
  if [[ ! -e $rootfs/.done ]]; then
    local t0=$SECONDS
    rm -rf "$rootfs"
    mkdir -p "$CACHE"
    debootstrap --variant=minbase "$DEBIAN_RELEASE" "$rootfs" "$DEBIAN_MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
      { tail -20 "$CACHE/debootstrap.log"; exit 1; }
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    touch "$rootfs/.done"
    log "debootstrap $DEBIAN_RELEASE in $((SECONDS - t0)) s"
  fi
  if ! buildah inspect --type image "docker.io/library/debian:$DEBIAN_RELEASE" >/dev/null 2>&1; then
    local c
    c=$(buildah from scratch)
    tar -C "$rootfs" --exclude=./.done --exclude='./dev/*' -cf "$CACHE/rootfs.tar" .
    buildah add "$c" "$CACHE/rootfs.tar" / >/dev/null
    rm -f "$CACHE/rootfs.tar"
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$c"
    buildah commit -q "$c" "docker.io/library/debian:$DEBIAN_RELEASE" >/dev/null
    buildah tag "docker.io/library/debian:$DEBIAN_RELEASE" "docker.io/library/debian:$DEBIAN_RELEASE-slim"
    buildah rm "$c" >/dev/null
    log "base image debian:$DEBIAN_RELEASE (and -slim) from the debootstrap root filesystem"
  fi
  local golang=docker.io/library/golang:$GO_VERSION-$DEBIAN_RELEASE
  if ! buildah inspect --type image "$golang" >/dev/null 2>&1; then
    local c
    c=$(buildah from --pull=false "docker.io/library/debian:$DEBIAN_RELEASE")
    buildah copy "$c" "$GOROOT_HOST" /usr/local/go >/dev/null
    buildah config --env PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
    buildah commit -q "$c" "$golang" >/dev/null
    buildah rm "$c" >/dev/null
    log "base image golang:$GO_VERSION-$DEBIAN_RELEASE: the host's Go at $GOROOT_HOST"
  fi
}

cmd_build() {
  need
  local t0=$SECONDS
  base_images
  local t1=$SECONDS
  # --network host: RUN steps reach the Debian archive and the Go module proxy as the host
  # does; the host's local CAs (a TLS-inspecting proxy) join the bundle the images' own
  # ca-certificates package builds.
  local cas=()
  if [[ -d /usr/local/share/ca-certificates ]]; then
    cas=(--volume /usr/local/share/ca-certificates:/usr/local/share/ca-certificates:ro)
  fi
  buildah bud --pull=false --layers --network host --isolation chroot "${cas[@]}" \
    --build-arg "GO_VERSION=$GO_VERSION" --build-arg "VERSION=$(git describe --always --dirty 2>/dev/null || echo dev)" \
    -t "$IMAGE" -f Dockerfile . >&2
  local t2=$SECONDS
  rm -f "$ARCHIVE"
  buildah push -q "$IMAGE" "oci-archive:$ARCHIVE:$IMAGE" >/dev/null
  log "base images $((t1 - t0)) s, buildah bud $((t2 - t1)) s, archive $((SECONDS - t2)) s: $IMAGE in $ARCHIVE"
}

case "${1:-}" in
  build) cmd_build ;;
  archive) [[ -e $ARCHIVE ]] && echo "$ARCHIVE" || { log "no archive: hack/image.sh build $TAG"; exit 1; } ;;
  *) echo "usage: $0 build|archive [TAG]" >&2; exit 2 ;;
esac
