.PHONY: install demo lint test-fast test test-install test-container ci

# Everything is installed into .venv by scripts/install.sh (idempotent, so every target can run it).
install:
	bash scripts/install.sh

# The main job on the example delivery the repository ships (examples/README.md: three vendors, known
# LLM shares in examples/truth.csv): the audit with the shipped calibration, then with the task's
# references; each vendor's verdict beside the truth, and where the HTML reports are.
DEMO_COLUMNS = --text-col text --vendor-col vendor --worker-col worker_id --id-col item_id
DEMO_REFERENCES = --human-reference examples/references/human.csv --machine-reference examples/references/machine.csv
demo: install
	.venv/bin/auditor audit examples/delivery.csv $(DEMO_COLUMNS) --out out/demo
	.venv/bin/auditor audit examples/delivery.csv $(DEMO_COLUMNS) $(DEMO_REFERENCES) --out out/demo-references
	.venv/bin/python scripts/demo_summary.py examples/truth.csv out/demo out/demo-references

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

# The image as shipped, built with podman and run (scripts/container/test.sh): its own non-root user,
# /readyz, /v1/score, a REST audit of the example delivery with its report, the health check. No registry
# is reachable here: the base image is a stand-in made from Debian's packages, cached between runs.
test-container: install
	bash scripts/container/test.sh

ci: lint test test-install
