# voicepool — the two commands that matter: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV := .tools/bin/uv
UV_VERSION := 0.13.8
export UV_PYTHON := $(shell command -v $(PY) || command -v python3)
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy

.PHONY: run test bench setup setup-run setup-test lint typecheck pytest frontend frontend-test e2e manifests docker clean

$(UV):
	$(PY) -m venv .tools
	.tools/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --all-extras
	touch $@

setup: $(VENV)/.synced

setup-run: setup
	scripts/ensure-system-deps.sh run

setup-test: setup
	scripts/ensure-system-deps.sh test

frontend/dist/index.html: $(shell find frontend/src frontend/index.html frontend/package-lock.json -type f 2>/dev/null)
	@if [ -f frontend/package.json ]; then cd frontend && npm ci --no-audit --no-fund && npm run build; fi

frontend:
	@if [ -f frontend/package.json ]; then $(MAKE) frontend/dist/index.html; fi

run: setup-run frontend
	$(BIN)/python -m voice_agent

lint: setup
	$(BIN)/ruff check agent operator tests bench
	$(BIN)/ruff format --check agent operator tests bench

typecheck: setup
	$(BIN)/mypy

pytest: setup-test
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -p no:cacheprovider

frontend-test:
	@if [ -f frontend/package.json ]; then cd frontend && npm ci --no-audit --no-fund && npm run lint && npm run typecheck && npm test; fi

test: setup-test lint typecheck frontend frontend-test pytest

bench: setup-test frontend
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .tools frontend/node_modules frontend/dist .pytest_cache .mypy_cache .ruff_cache
