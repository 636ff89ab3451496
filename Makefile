# portguard: `make test` (lint, types, tests) and `make demo` (a throwaway-namespace tour).
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest demo bench clean

$(STAMP): pyproject.toml scripts/bootstrap.sh
	./scripts/bootstrap.sh

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check portguard tests bench
	$(BIN)/ruff format --check portguard tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

demo: $(STAMP)
	./scripts/demo.sh

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
