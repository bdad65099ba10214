#!/usr/bin/env bash
# `make test-container`: the image as shipped, built with podman and tested over HTTP.
#   1. scripts/container/images.sh: podman (apt-get when missing), the stand-in base image made
#      from Debian's packages (cached in podman's store), the Dockerfile built on it (layer cache).
#   2. tests/test_container.py (pytest -m container) against one container of that image: its own
#      CMD and non-root user, /readyz, /v1/score, a REST audit of examples/delivery.csv with its
#      report, the model files readable by the service user, the health check.
#   3. tests/test_container_compose.py: compose.yaml with podman-compose (web, 2 workers, the
#      PostgreSQL and Redis stand-ins of scripts/container/standins/), over HTTP on port 8000.
# Prints how long each step took. Run as root (podman, apt-get) from the repository's .venv.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=scripts/container/env.sh
source "$HERE/env.sh"
cd "$REPO"

# CONTAINER_COMPOSE=0 leaves compose.yaml out (the image alone).
compose=${CONTAINER_COMPOSE:-1}
tests=(tests/test_container.py)
started=$SECONDS
if [[ $compose == 1 ]]; then
    bash "$HERE/images.sh" compose
    tests+=(tests/test_container_compose.py)
    export AUDITOR_TEST_COMPOSE=auditor-ct
else
    bash "$HERE/images.sh"
fi
built=$SECONDS

status=0
AUDITOR_TEST_IMAGE=$IMAGE .venv/bin/python -m pytest -m container "${tests[@]}" \
    -p no:cacheprovider -s -o addopts="-ra --strict-markers" || status=$?
tested=$SECONDS

echo "test-container timings: images $((built - started)) s, tests $((tested - built)) s, total $((tested - started)) s"
exit "$status"
