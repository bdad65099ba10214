.PHONY: install demo lint test-fast test ci

# Everything is installed into .venv by scripts/install.sh (idempotent, so every target can run it).
install:
	bash scripts/install.sh

demo: install
	.venv/bin/auditor score ../shared/datasets/gpturk/test.json --text-col text --out out/gpturk-test-scores.csv

# ruff (pyproject: complexity, naming, bugbear ...), the formatter's check, and mypy over detectors/, auditor/, api/.
lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

# The fast tier: everything that does not load the causal LM (tests marked `lm`), a few minutes.
test-fast: install
	.venv/bin/python -m pytest -m "not lm"

# The whole suite (the LM once per session, the REST service against SQLite and PostgreSQL).
test: install
	.venv/bin/python -m pytest

ci: lint test
