.PHONY: install demo test

# Everything is installed into .venv by scripts/install.sh (idempotent, so both targets can run it).
install:
	bash scripts/install.sh

demo: install
	.venv/bin/auditor score ../shared/datasets/gpturk/test.json --text-col text --out out/gpturk-test-scores.csv

test: install
	.venv/bin/python -m pytest
