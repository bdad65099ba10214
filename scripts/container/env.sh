# Shared by scripts/container/*.sh (sourced): podman's settings and the images' names.
# shellcheck shell=bash
export CONTAINERS_CONF=${CONTAINERS_CONF:-$HERE/containers.conf}
IMAGE=${AUDITOR_IMAGE:-localhost/llm-auditor:latest}
PYTHON_STANDIN=localhost/auditor-standin-python:3.11-bookworm
POSTGRES_STANDIN=localhost/auditor-standin-postgres:15
REDIS_STANDIN=localhost/auditor-standin-redis:7
# Logs and the generated pip configuration; kept between runs on the same machine.
CACHE=${AUDITOR_CONTAINER_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/llm-auditor-container}
