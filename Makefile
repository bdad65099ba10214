.PHONY: install demo lint test-fast test test-install ci

# Everything is installed into .venv by scripts/install.sh (idempotent, so every target can run it).
install:
	bash scripts/install.sh

demo: install
	.venv/bin/auditor score ../shared/datasets/gpturk/test.json --text-col text --out out/gpturk-test-scores.csv

# ruff (pyproject: complexity, naming, bugbear ...), the formatter's check, and mypy over detectors/, auditor/, api/;
# the Dockerfile (hadolint) and compose.yaml (the Compose Specification's JSON schema, vendored: no network).
lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/hadolint Dockerfile
	.venv/bin/check-jsonschema --builtin-schema vendor.compose-spec compose.yaml

# The fast tier: everything that does not load the causal LM (tests marked `lm`), a few minutes.
test-fast: install
	.venv/bin/python -m pytest -m "not lm and not install"

# The whole suite (the LM once per session, the REST service against SQLite and PostgreSQL),
# but for the fresh-install tests (pyproject's addopts leave out `install`).
test: install
	.venv/bin/python -m pytest

# A fresh virtualenv, CPU torch, `pip install .` (no extras) and `auditor score` there (about 4 minutes).
test-install: install
	.venv/bin/python -m pytest -m install tests/test_install.py

ci: lint test test-install
