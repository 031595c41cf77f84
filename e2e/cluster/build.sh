#!/usr/bin/env bash
# Builds the Kubernetes control plane the cluster tests run against, from Go source modules
# fetched through the Go module proxy (nothing else is downloaded): kube-apiserver,
# kube-controller-manager and kubectl (k8s.io/kubernetes), etcd (go.etcd.io/etcd/server/v3),
# kwok (sigs.k8s.io/kwok) and helm (helm.sh/helm/v3).
#
# The binaries land in $CARERP_CONTROL_PLANE_CACHE/<versions>/bin, outside the clone; a second
# run with the same versions finds them there and returns at once. Prints the bin directory on
# its last line; `build.sh --print-dir` prints it without building (the harness,
# e2e/src/cluster.rs, asks it so the versions live here only).
set -euo pipefail

# Kubernetes 1.33 matches k8s-openapi's `v1_33` feature in the root Cargo.toml.
K8S_VERSION=v1.33.13
# The staging modules (k8s.io/api, k8s.io/client-go, ...) are tagged v0.<minor>.<patch>.
K8S_STAGING_VERSION=v0.33.13
ETCD_VERSION=v3.5.35
KWOK_VERSION=v0.7.0
HELM_VERSION=v3.18.6

export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null || { echo "build.sh: go is not installed" >&2; exit 1; }
GO_VERSION="$(go env GOVERSION)"

CACHE="${CARERP_CONTROL_PLANE_CACHE:-/var/cache/carerp/control-plane}"
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_${GO_VERSION}"
OUT="$CACHE/$KEY/bin"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok helm)

if [[ "${1:-}" == "--print-dir" ]]; then
    echo "$OUT"
    exit 0
fi

complete() {
    for bin in "${BINARIES[@]}"; do [[ -x "$OUT/$bin" ]] || return 1; done
}
if complete; then
    echo "$OUT"
    exit 0
fi

mkdir -p "$OUT"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# Module mode everywhere, no vendoring, no toolchain switching behind our back.
export GOFLAGS=-mod=mod
export GOTOOLCHAIN=local
export CGO_ENABLED=0
LDFLAGS_BASE="-s -w"

# A throw-away module that requires MODULE@VERSION, so `go build` can build its commands.
# Extra `replace` lines come on stdin.
new_module() {
    local dir="$1" module="$2" version="$3"
    mkdir -p "$dir"
    (
        cd "$dir"
        printf 'module carerp.local/control-plane/%s\n\ngo 1.24.0\n' "$(basename "$dir")" > go.mod
        cat >> go.mod
        go mod edit -require="$module@$version"
    )
}

started=$SECONDS

if [[ ! -x "$OUT/kube-apiserver" || ! -x "$OUT/kube-controller-manager" || ! -x "$OUT/kube-scheduler" || ! -x "$OUT/kubectl" ]]; then
    # The scheduler binds the pods kwok then makes Ready: kwok plays the kubelet only.
    echo "build.sh: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $K8S_VERSION" >&2
    # k8s.io/kubernetes points its staging modules at ./staging/src/...; as a dependency those
    # replace lines do not apply, so point each at its published module at the same release.
    gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    replaces="$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/k8s.io/[a-z0-9-]*$#\1#p' "$gomod")"
    [[ -n "$replaces" ]] || { echo "build.sh: no staging replace lines in $gomod" >&2; exit 1; }
    {
        echo "replace ("
        for m in $replaces; do echo "    $m => $m $K8S_STAGING_VERSION"; done
        echo ")"
    } | new_module "$WORK/kubernetes" k8s.io/kubernetes "$K8S_VERSION"
    minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
    version_flags=""
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        version_flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        version_flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    (
        cd "$WORK/kubernetes"
        go build -trimpath -ldflags="$LDFLAGS_BASE$version_flags" -o "$OUT/" \
            k8s.io/kubernetes/cmd/kube-apiserver \
            k8s.io/kubernetes/cmd/kube-controller-manager \
            k8s.io/kubernetes/cmd/kube-scheduler \
            k8s.io/kubernetes/cmd/kubectl
    )
fi

if [[ ! -x "$OUT/etcd" ]]; then
    echo "build.sh: etcd $ETCD_VERSION" >&2
    # go.etcd.io/etcd/server/v3 replaces its sibling modules with ../api etc.; use the
    # published modules it requires instead (the same release: client/v2 is tagged v2.305.x).
    gomod="$(go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    siblings="$(sed -n 's#^[[:space:]]*\(go.etcd.io/etcd/[a-z0-9/]*\) => \.\./.*$#\1#p' "$gomod")"
    [[ -n "$siblings" ]] || { echo "build.sh: no sibling replace lines in $gomod" >&2; exit 1; }
    {
        echo "replace ("
        for m in $siblings; do
            v="$(awk -v m="$m" '$1 == m && $2 ~ /^v/ { print $2; exit }' "$gomod")"
            [[ -n "$v" ]] || { echo "build.sh: $gomod requires no version of $m" >&2; exit 1; }
            echo "    $m => $m $v"
        done
        echo ")"
    } | new_module "$WORK/etcd" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
    (
        cd "$WORK/etcd"
        go build -trimpath -ldflags="$LDFLAGS_BASE" -o "$OUT/etcd" go.etcd.io/etcd/server/v3
    )
fi

if [[ ! -x "$OUT/kwok" ]]; then
    echo "build.sh: kwok $KWOK_VERSION" >&2
    new_module "$WORK/kwok" sigs.k8s.io/kwok "$KWOK_VERSION" < /dev/null
    (
        cd "$WORK/kwok"
        go build -trimpath -ldflags="$LDFLAGS_BASE -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION" \
            -o "$OUT/kwok" sigs.k8s.io/kwok/cmd/kwok
    )
fi

if [[ ! -x "$OUT/helm" ]]; then
    echo "build.sh: helm $HELM_VERSION" >&2
    new_module "$WORK/helm" helm.sh/helm/v3 "$HELM_VERSION" < /dev/null
    (
        cd "$WORK/helm"
        go build -trimpath -ldflags="$LDFLAGS_BASE -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
            -o "$OUT/helm" helm.sh/helm/v3/cmd/helm
    )
fi

complete || { echo "build.sh: a binary is missing from $OUT" >&2; exit 1; }
echo "build.sh: built in $((SECONDS - started)) s" >&2
echo "$OUT"
