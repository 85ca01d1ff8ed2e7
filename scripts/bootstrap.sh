#!/usr/bin/env bash
# Install what Headwater's local services and tests need on a fresh Debian 12 machine.
# Idempotent: every step is skipped when its result is already there, so a second run takes
# seconds. Usage: bash scripts/bootstrap.sh
#   HEADWATER_CACHE_DIR    cache of binaries built from source (default ~/.cache/headwater)
#   HEADWATER_MINIO_VERSION  Go module version of MinIO to build (default: the one tested here)
#   HEADWATER_MONGO_TOOLS_VERSION  mongo-tools pseudo-version for mongoimport (bench only)
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_DIR="${HEADWATER_CACHE_DIR:-$HOME/.cache/headwater}"
BIN="$CACHE_DIR/bin"
MINIO_VERSION="${HEADWATER_MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
FERRETDB_VERSION="v1.24.0"
MONGO_TOOLS_VERSION="${HEADWATER_MONGO_TOOLS_VERSION:-v0.0.0-20240724183527-6d4f001be3fc}"
APT_PACKAGES=(postgresql mariadb-server dovecot-imapd docker.io debootstrap chromium)
export PATH="$PATH:/usr/local/go/bin:$HOME/go/bin:$HOME/.local/bin"

say() { printf 'bootstrap: %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- uv -------------------------------------------------------------------------------------
if ! command -v uv >/dev/null 2>&1; then
    say "installing uv (pip install uv)"
    python3 -m pip install --quiet uv 2>/dev/null \
        || python3 -m pip install --quiet --user --break-system-packages uv
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
    command -v uv >/dev/null 2>&1 || { say "uv installed but not on PATH"; exit 1; }
fi

# --- Debian packages ----------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get -o DPkg::Lock::Timeout=600 update -qq
    as_root apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# --- binaries built from source (cached across clones) ---------------------------------------
mkdir -p "$BIN"
need_go() {
    command -v go >/dev/null 2>&1 || { say "go not found: install Go >= 1.24 (/usr/local/go)"; exit 1; }
}

if [ ! -x "$BIN/minio" ]; then
    need_go
    say "building MinIO $MINIO_VERSION into $BIN (takes several minutes)"
    GOTOOLCHAIN=local GOBIN="$BIN" go install "github.com/minio/minio@$MINIO_VERSION" \
        || GOTOOLCHAIN=local GOBIN="$BIN" go install github.com/minio/minio@latest
fi

# FerretDB panics at start unless build/version/version.txt holds its version, which the
# module zip leaves empty (and `go install ...@v1.24.0` is refused by the proxy here), so it is
# built from a copy of the module source with that file filled in.
if ! "$BIN/ferretdb" --version >/dev/null 2>&1; then
    need_go
    say "building FerretDB $FERRETDB_VERSION into $BIN"
    work="$(mktemp -d)"
    trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
    (
        cd "$work"
        export GOTOOLCHAIN=local GOFLAGS=-mod=mod
        go mod init headwater-ferretdb-build >/dev/null 2>&1
        go get "github.com/FerretDB/FerretDB/cmd/ferretdb@$FERRETDB_VERSION" >get.log 2>&1 \
            || { cat get.log >&2; exit 1; }
        src="$(go list -m -f '{{.Dir}}' github.com/FerretDB/FerretDB)"
        cp -r "$src" "$work/src"
        chmod -R u+w "$work/src"
        echo "$FERRETDB_VERSION" >"$work/src/build/version/version.txt"
        cd "$work/src"
        go build -buildvcs=false -o "$work/ferretdb" ./cmd/ferretdb
    )
    mv "$work/ferretdb" "$BIN/ferretdb"
    "$BIN/ferretdb" --version | head -1
fi

# mongoimport (MongoDB Database Tools) is only the benchmark's reference for db-migration, so a
# failed build prints a note and bootstrap goes on. mongo-tools has no semver tags (the proxy
# refuses `go install ...@latest` and its version list) and no entry in the checksum database,
# so it is built from a throwaway module pinned to one pseudo-version. That one is from July
# 2024: later mongoimport sends `bypassEmptyTsReplacement`, which FerretDB v1 refuses.
if [ ! -x "$BIN/mongoimport" ]; then
    need_go
    say "building mongoimport $MONGO_TOOLS_VERSION into $BIN"
    mi_work="$(mktemp -d)"
    if (
        cd "$mi_work"
        export GOTOOLCHAIN=local GOFLAGS=-mod=mod GONOSUMDB=github.com/mongodb/mongo-tools
        go mod init headwater-mongoimport-build >/dev/null 2>&1
        go get "github.com/mongodb/mongo-tools/mongoimport/main@$MONGO_TOOLS_VERSION" \
            >get.log 2>&1 || { tail -3 get.log >&2; exit 1; }
        go build -o "$mi_work/mongoimport" github.com/mongodb/mongo-tools/mongoimport/main
    ); then
        mv "$mi_work/mongoimport" "$BIN/mongoimport"
    else
        say "note: mongoimport did not build; bench/db_migration.py will skip that baseline"
    fi
    chmod -R u+w "$mi_work" 2>/dev/null || true
    rm -rf "$mi_work"
fi

# --- Python environment -----------------------------------------------------------------------
# Bytecode is compiled at install: with PYTHONDONTWRITEBYTECODE set (as on these machines)
# Python would otherwise compile every module from source in every process, which doubles the
# start of each flow-run process a worker launches (measured: `import prefect` 2.2 s -> 1.1 s).
say "uv sync"
uv sync --quiet --compile-bytecode
uv run --no-sync python -m compileall -q headwater flows tasks blocks deployments >/dev/null
say "done"
