#!/usr/bin/env bash
# k8s-tools.sh: build the Kubernetes control plane and CSI sidecars used by test/e2e/k8s
# from the Go module proxy, each in its own throwaway module (never the driver's go.mod),
# and cache the binaries outside the repo keyed by version, so a second run does nothing.
#
#   hack/k8s-tools.sh build [TOOL...]   build missing tools (default: all); prints timings
#   hack/k8s-tools.sh path  [TOOL]      print "TOOL PATH" lines (or one PATH) of cached tools
#   hack/k8s-tools.sh list              print the tool names and versions
#
# Cache: ${SHIPHOLD_TOOLS_CACHE:-$HOME/.cache/shiphold/tools}/<tool>-<version>/
# Run long builds niced: nice -n 19 hack/k8s-tools.sh build >/tmp/k8s-tools.log 2>&1 &
set -euo pipefail

CACHE="${SHIPHOLD_TOOLS_CACHE:-$HOME/.cache/shiphold/tools}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ETCD_VERSION=v3.7.3
KUBE_VERSION=v1.37.2
KUBE_STAGING_VERSION=v0.37.2
PROVISIONER_VERSION=v6.4.0
ATTACHER_VERSION=v4.13.0
RESIZER_VERSION=v2.3.0
SNAPSHOTTER_VERSION=v8.7.0
HELM_VERSION=v3.22.0
# kubernetes-csi/node-driver-registrar is not served by the module proxy (403 for every
# version): hack/tools/node-driver-registrar is a stand-in speaking the same kubelet plugin
# registration API (k8s.io/kubelet at the kubelet's version) with the same flags.
REGISTRAR_VERSION=shiphold-$KUBE_STAGING_VERSION

# tool -> version; snapshot-crds is a directory of YAML, the rest are binaries.
# helm is optional (not in "all"): test/manifests uses helm's Go packages in-process.
# kubectl is built at the control plane's version: Debian's (1.20) lacks --validate=strict.
# kubelet and kube-scheduler make the e2e's node (test/e2e/k8s/node.go); they are built in the
# same module as kube-apiserver, so they share its download and most of its build cache.
ALL_TOOLS=(snapshot-crds etcd kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet
  csi-provisioner csi-attacher csi-resizer csi-snapshotter snapshot-controller node-driver-registrar)
version_of() {
  case "$1" in
    etcd) echo "$ETCD_VERSION" ;;
    kube-apiserver | kube-controller-manager | kubectl | kube-scheduler | kubelet) echo "$KUBE_VERSION" ;;
    csi-provisioner) echo "$PROVISIONER_VERSION" ;;
    csi-attacher) echo "$ATTACHER_VERSION" ;;
    csi-resizer) echo "$RESIZER_VERSION" ;;
    csi-snapshotter | snapshot-controller | snapshot-crds) echo "$SNAPSHOTTER_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    node-driver-registrar) echo "$REGISTRAR_VERSION" ;;
    *) echo "unknown tool: $1" >&2; return 1 ;;
  esac
}
dir_of() { echo "$CACHE/$1-$(version_of "$1")"; }
artifact_of() {
  if [[ $1 == snapshot-crds ]]; then dir_of "$1"; else echo "$(dir_of "$1")/$1"; fi
}
have() { [[ -e "$(dir_of "$1")/.done" ]]; }

log() { printf '[k8s-tools %s] %s\n' "$(date +%T)" "$*" >&2; }

WORK=""
cleanup() { if [[ -n $WORK ]]; then chmod -R u+w "$WORK" 2>/dev/null || true; rm -rf "$WORK"; fi; }
trap cleanup EXIT
workdir() { # WORK is made by cmd_build: set here, it would be lost in $(...) subshells
  if [[ -z $WORK ]]; then WORK=$(mktemp -d /tmp/shiphold-k8s-tools.XXXXXX); fi
  mktemp -d "$WORK/$1.XXXX"
}

# install_into TOOL FILE...: move built files into the cache atomically-enough, then mark done.
install_into() {
  local tool=$1; shift
  local dest; dest=$(dir_of "$tool")
  mkdir -p "$dest"
  cp -f "$@" "$dest/"
  touch "$dest/.done"
}

# mod_dir MODULE@VERSION: download a module into the module cache and print its directory.
mod_dir() {
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# copy_module MODULE@VERSION: a writable copy of a module's source (go install refuses modules
# with replace directives; building inside a copy uses their go.mod as the main module).
copy_module() {
  local src dst
  src=$(mod_dir "$1")
  [[ -n $src ]] || { log "cannot download $1"; return 1; }
  dst=$(workdir src)
  cp -r "$src/." "$dst/"
  chmod -R u+w "$dst"
  echo "$dst"
}

build_snapshot_crds() {
  local src
  src=$(mod_dir "github.com/kubernetes-csi/external-snapshotter/client/v8@$SNAPSHOTTER_VERSION")
  # only the CRDs: the directory also holds a kustomization.yaml
  install_into snapshot-crds "$src"/config/crd/*.storage.k8s.io_*.yaml
  chmod u+w "$(dir_of snapshot-crds)"/*.yaml
}

build_etcd() {
  local m; m=$(workdir etcd)
  (
    cd "$m"
    go mod init shiphold.local/tools/etcd >/dev/null 2>&1
    cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
GO
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "go.etcd.io/etcd/etcdctl/v3@$ETCD_VERSION"
    go mod tidy
    go build -trimpath -o bin/etcd go.etcd.io/etcd/server/v3
    go build -trimpath -o bin/etcdctl go.etcd.io/etcd/etcdctl/v3
    install_into etcd bin/etcd bin/etcdctl
  )
}

build_kube() {
  local m; m=$(workdir kube)
  (
    cd "$m"
    go mod init shiphold.local/tools/kube >/dev/null 2>&1
    local gomod
    gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
    # kubernetes pins its staging modules at v0.0.0 (replaced by ./staging in its own tree):
    # point each at the published v0.37.x; the sample-* ones are neither needed nor served.
    local staging
    staging=$(grep -E '^[[:space:]]+k8s\.io/[a-z0-9-]+ v0\.0\.0([[:space:]]|$)' "$gomod" |
      awk '{print $1}' | grep -v '^k8s.io/sample-' | sort -u)
    log "kube: $(wc -l <<<"$staging") staging modules -> $KUBE_STAGING_VERSION"
    local args=(-require "k8s.io/kubernetes@$KUBE_VERSION")
    local s
    for s in $staging; do args+=(-replace "$s=$s@$KUBE_STAGING_VERSION"); done
    go mod edit "${args[@]}"
    cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
    go mod tidy
    local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
    local ld="-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
    ld+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    ld+=" -X k8s.io/component-base/version.gitTreeState=clean"
    local c
    for c in "$@"; do
      local t0=$SECONDS
      go build -trimpath -ldflags "$ld" -o "bin/$c" "k8s.io/kubernetes/cmd/$c"
      install_into "$c" "bin/$c"
      log "built $c in $((SECONDS - t0)) s"
    done
  )
}

# build_sidecar MODULE VERSION CMD... [-- go mod edit args]
build_sidecar() {
  local mod=$1 ver=$2; shift 2
  local cmds=() edits=()
  while (($#)); do
    if [[ $1 == -- ]]; then shift; edits=("$@"); break; fi
    cmds+=("$1"); shift
  done
  local src; src=$(copy_module "$mod@$ver")
  (
    cd "$src"
    rm -rf vendor
    if ((${#edits[@]})); then go mod edit "${edits[@]}"; fi
    local c
    for c in "${cmds[@]}"; do
      local t0=$SECONDS
      go build -mod=mod -trimpath -ldflags "-X main.version=$ver" -o "bin/$c" "./cmd/$c"
      install_into "$c" "bin/$c"
      log "built $c in $((SECONDS - t0)) s"
    done
  )
}

# build_registrar: hack/tools/node-driver-registrar in a module of its own, against
# k8s.io/kubelet (the registration API) at the kubelet's version.
build_registrar() {
  local m; m=$(workdir registrar)
  cp "$ROOT"/hack/tools/node-driver-registrar/*.go "$m/"
  (
    cd "$m"
    go mod init shiphold.local/tools/node-driver-registrar >/dev/null 2>&1
    go get "k8s.io/kubelet@$KUBE_STAGING_VERSION" "k8s.io/klog/v2" \
      "github.com/container-storage-interface/spec" "google.golang.org/grpc"
    go mod tidy
    go build -trimpath -ldflags "-X main.version=$REGISTRAR_VERSION" -o bin/node-driver-registrar .
    install_into node-driver-registrar bin/node-driver-registrar
  )
}

build_one() {
  case "$1" in
    snapshot-crds) build_snapshot_crds ;;
    etcd) build_etcd ;;
    kube-apiserver | kube-controller-manager | kubectl | kube-scheduler | kubelet)
      local want=() c
      for c in kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet; do have "$c" || want+=("$c"); done
      build_kube "${want[@]}" ;;
    csi-provisioner)
      build_sidecar github.com/kubernetes-csi/external-provisioner/v6 "$PROVISIONER_VERSION" csi-provisioner ;;
    csi-attacher)
      build_sidecar github.com/kubernetes-csi/external-attacher/v4 "$ATTACHER_VERSION" csi-attacher ;;
    csi-resizer)
      build_sidecar github.com/kubernetes-csi/external-resizer/v2 "$RESIZER_VERSION" csi-resizer ;;
    csi-snapshotter | snapshot-controller)
      local want=()
      have csi-snapshotter || want+=(csi-snapshotter)
      have snapshot-controller || want+=(snapshot-controller)
      # its replace of client/v8 => ./client points at a nested module missing from the zip
      build_sidecar github.com/kubernetes-csi/external-snapshotter/v8 "$SNAPSHOTTER_VERSION" "${want[@]}" -- \
        -replace "github.com/kubernetes-csi/external-snapshotter/client/v8=github.com/kubernetes-csi/external-snapshotter/client/v8@$SNAPSHOTTER_VERSION" ;;
    node-driver-registrar) build_registrar ;;
    helm)
      local m; m=$(workdir helm)
      (cd "$m" && GOBIN="$m/bin" go install -trimpath \
        -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" && install_into helm bin/helm) ;;
    *) log "unknown tool: $1"; return 1 ;;
  esac
}

cmd_build() {
  local tools=("$@")
  ((${#tools[@]})) || tools=("${ALL_TOOLS[@]}")
  local total0=$SECONDS t0 t failed=0
  WORK=$(mktemp -d /tmp/shiphold-k8s-tools.XXXXXX)
  for t in "${tools[@]}"; do
    version_of "$t" >/dev/null
    if have "$t"; then log "$t $(version_of "$t"): cached"; continue; fi
    t0=$SECONDS
    log "$t $(version_of "$t"): building"
    if build_one "$t"; then
      log "$t $(version_of "$t"): done in $((SECONDS - t0)) s"
    else
      log "$t $(version_of "$t"): FAILED after $((SECONDS - t0)) s"
      failed=1
    fi
  done
  log "total $((SECONDS - total0)) s (cache $CACHE)"
  return $failed
}

cmd_path() {
  if (($#)); then
    have "$1" || { log "$1 $(version_of "$1") not built: run hack/k8s-tools.sh build $1"; return 1; }
    artifact_of "$1"
    return
  fi
  local t missing=0
  for t in "${ALL_TOOLS[@]}"; do
    if have "$t"; then echo "$t $(artifact_of "$t")"; else log "$t: not built"; missing=1; fi
  done
  return $missing
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  path) shift; cmd_path "$@" ;;
  list) for t in "${ALL_TOOLS[@]}" helm; do echo "$t $(version_of "$t")"; done ;;
  *) echo "usage: $0 build [TOOL...] | path [TOOL] | list" >&2; exit 2 ;;
esac
