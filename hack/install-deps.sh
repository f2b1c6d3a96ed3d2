#!/usr/bin/env bash
# Installs, idempotently, what building and testing shiphold need on Debian 12: Ceph 16.2
# (daemons for the local cluster, clients, FUSE clients, -dev headers for go-ceph), the
# userspace NFS server and client used by the Isilon tests (libnfs-dev: shipholdctl migrate
# reads NFSv3 through libnfs), rsync, acl and attr (the migration tests and bench), and
# filesystem tools (btrfs-progs:
# the OneFS simulator enforces hard quotas with btrfs qgroups); the e2e node (containerd, runc,
# busybox-static for the pods' image, the CNI loopback plugin, iptables whose chains the
# kubelet makes and the e2e removes) and the image build of hack/image.sh (buildah,
# debootstrap with the archive's keyring).
set -euo pipefail

PACKAGES=(
  ceph-mon ceph-mgr ceph-osd ceph-mds ceph-common ceph-fuse rbd-fuse rbd-nbd
  librados-dev librbd-dev libcephfs-dev
  nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils libnfs-dev
  rsync acl attr
  e2fsprogs xfsprogs btrfs-progs util-linux fuse iproute2 uuid-runtime bc procps
  containerd runc busybox-static containernetworking-plugins iptables
  buildah debootstrap debian-archive-keyring ca-certificates
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || { echo "install-deps: Go is not installed (need Go 1.26+ at /usr/local/go)" >&2; exit 1; }
cd "$(dirname "$0")/.."
go mod download
# staticcheck at a version the Go module proxy serves whole, beside go vet in make test.
STATICCHECK_VERSION=v0.8.2
bin=$(go env GOPATH)/bin
if ! "$bin/staticcheck" -version 2>/dev/null | grep -q "${STATICCHECK_VERSION#v}"; then
  GOFLAGS= go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
echo "install-deps: ok"
