#!/usr/bin/env bash
# Builds what `make test-container` runs, on a machine that reaches Debian's and PyPI's packages
# but no container registry: podman (installed with apt-get when missing), stand-in base images
# made from Debian's packages, and the Dockerfile built on them.
#
#   bash scripts/container/images.sh            # python stand-in + the auditor's image
#   bash scripts/container/images.sh compose    # + the PostgreSQL and Redis stand-ins compose uses
#
# Idempotent and cached: a stand-in already in podman's store is reused (delete it with
# `podman rmi` to rebuild it), and podman's layer cache keeps an unchanged build to seconds.
# Everywhere else the Dockerfile builds as it is, on the official python image.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=scripts/container/env.sh
source "$HERE/env.sh"

log() { printf '[images %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# Debian's packages, each with the file that says it is installed. For compose: podman-compose,
# catatonit (compose's `init: true`) and the CNI plugin that lets containers find each other by
# service name (postgres, redis).
ensure_packages() {
    local wanted=(podman:/usr/bin/podman runc:/usr/bin/runc debootstrap:/usr/sbin/debootstrap)
    if [[ ${1:-} == compose ]]; then
        wanted+=(podman-compose:/usr/bin/podman-compose catatonit:/usr/bin/catatonit
            golang-github-containernetworking-plugin-dnsname:/usr/lib/cni/dnsname)
    fi
    local missing=() item
    for item in "${wanted[@]}"; do
        [[ -e ${item#*:} ]] || missing+=("${item%%:*}")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]} (apt-get)"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

exists() { podman image exists "$1"; }

# The stand-in for python:3.11-slim-bookworm: Debian bookworm's own Python 3.11 (minbase), with
# this machine's CA bundle so that pip inside the build trusts what the host trusts.
python_standin() {
    if exists "$PYTHON_STANDIN"; then
        log "$PYTHON_STANDIN: cached"
        return
    fi
    log "$PYTHON_STANDIN: debootstrap (a few minutes)"
    local root
    root=$(mktemp -d "${TMPDIR:-/tmp}/auditor-standin.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$root'" RETURN
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
        bookworm "$root" >"$root.log" 2>&1 || {
        tail -n 30 "$root.log" >&2
        return 1
    }
    rm -f "$root.log"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
    tar -C "$root" -c . | podman import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["python3"]' - "$PYTHON_STANDIN" >/dev/null
    log "$PYTHON_STANDIN: imported"
}

# A stand-in built on the python stand-in with a Containerfile of scripts/container/standins/.
standin() {
    local name=$1 containerfile=$2
    if exists "$name"; then
        log "$name: cached"
        return
    fi
    log "$name: building from Debian's packages"
    podman build --runtime runc --network host --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
        --format docker --build-arg "BASE=$PYTHON_STANDIN" -f "$HERE/standins/$containerfile" \
        -t "$name" "$HERE/standins" >&2
}

# pip inside the build gets this machine's pip configuration (find-links, extra indexes,
# constraints, CA bundle: files and PIP_* variables, as `pip config list` merges them) as
# /etc/pip.conf, and every local folder or file it names, mounted read-only at the same path.
pip_mounts() {
    local conf=$CACHE/pip.conf
    mkdir -p "$CACHE"
    python3 - "$conf" <<'PY'
import re, subprocess, sys
listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True)
settings = {}
for line in listed.stdout.splitlines():
    match = re.fullmatch(r"(:env:|[\w-]+)\.([\w-]+)='(.*)'", line)
    if match and match[1] in (":env:", "global", "install"):
        # the environment overrides the files, as for pip itself
        if match[1] == ":env:" or match[2] not in settings:
            settings[match[2]] = match[3]
keep = ("index-url", "extra-index-url", "find-links", "constraint", "cert", "trusted-host", "default-timeout", "retries")
with open(sys.argv[1], "w") as conf:
    conf.write("[global]\n")
    for key in keep:
        if key in settings:
            conf.write(f"{key} = {settings[key]}\n")
PY
    PIP_MOUNTS=(-v "$conf:/etc/pip.conf:ro")
    local value path
    for value in $(sed -n 's/^[a-z-]* = //p' "$conf"); do
        path=${value#file://}
        [[ $path == /* && -e $path ]] || continue
        [[ -d $path ]] || path=$(dirname "$path")
        # a local simple index links to files beside it (../../files/...): mount its parent
        [[ $(basename "$path") == simple ]] && path=$(dirname "$path")
        [[ $path == /etc/ssl/certs ]] && continue  # the stand-in carries the same bundle
        PIP_MOUNTS+=(-v "$path:$path:ro")
    done
    # PyTorch's own index is out of reach; the machine's pip configuration finds the CPU build.
    TORCH_INDEX_URL=$(sed -n 's/^index-url = //p' "$conf")
    TORCH_INDEX_URL=${TORCH_INDEX_URL:-https://pypi.org/simple}
}

build_image() {
    pip_mounts
    log "$IMAGE: podman build (cached layers are reused; about 10 minutes cold)"
    local started=$SECONDS
    # --format docker keeps the HEALTHCHECK (the OCI format drops it).
    podman build --runtime runc --network host --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 \
        --format docker "${PIP_MOUNTS[@]}" \
        --build-arg "PYTHON_IMAGE=$PYTHON_STANDIN" --build-arg "TORCH_INDEX_URL=$TORCH_INDEX_URL" \
        -t "$IMAGE" "$REPO" >"$CACHE/build.log" 2>&1 || {
        tail -n 60 "$CACHE/build.log" >&2
        log "$IMAGE: the build failed (whole log: $CACHE/build.log)"
        return 1
    }
    log "$IMAGE: built in $((SECONDS - started)) s, $(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%.2f GB", $1 / 1e9}')"
}

main() {
    ensure_packages "${1:-}"
    python_standin
    if [[ ${1:-} == compose ]]; then
        standin "$POSTGRES_STANDIN" postgres.Containerfile
        standin "$REDIS_STANDIN" redis.Containerfile
    fi
    build_image
}

main "$@"
