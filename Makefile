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

.PHONY: run test bench eval setup setup-run setup-test lint typecheck pytest frontend frontend-test e2e manifests docker clean

$(UV):
	$(PY) -m venv .tools
	.tools/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --all-extras
	touch $@

setup: $(VENV)/.synced

# `make run` needs only the agent extra (about 45 packages of the ~190 `make setup` installs). An
# up-to-date full environment already has them and is left alone; otherwise only the agent extra is
# synced, and the full environment's stamp goes (uv may rebuild the venv), so `make test` syncs again.
$(VENV)/.synced-run: $(UV) pyproject.toml uv.lock
	@if [ $(VENV)/.synced -nt pyproject.toml ] && [ $(VENV)/.synced -nt uv.lock ]; then \
	  echo "$(VENV): the full environment (make setup) is up to date"; \
	else \
	  rm -f $(VENV)/.synced && $(UV) sync --frozen --inexact --extra agent; \
	fi
	touch $@

setup-run: $(VENV)/.synced-run
	scripts/ensure-system-deps.sh run

setup-test: setup
	scripts/ensure-system-deps.sh test

frontend/node_modules/.installed: frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund
	touch $@

frontend/dist/index.html: frontend/node_modules/.installed $(shell find frontend/src frontend/public frontend/index.html -type f 2>/dev/null)
	cd frontend && npm run build

frontend: frontend/dist/index.html

run: setup-run frontend
	$(BIN)/python -m voice_agent

lint: setup
	$(BIN)/ruff check agent operator tests bench
	$(BIN)/ruff format --check agent operator tests bench

typecheck: setup
	$(BIN)/mypy

pytest: setup-test
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -p no:cacheprovider

# Unit tests (Vitest), then the browser end to end: Debian's Chromium against a real agent.
frontend-test: setup-test frontend/node_modules/.installed
	cd frontend && npm run lint && npm run typecheck && npm test && npm run e2e

test: setup-test lint typecheck frontend frontend-test pytest

bench: setup-test frontend
	$(BIN)/python -m bench

# Turn taking and recognition with several synthetic voices (docs/performance.md); also part of `make bench`.
eval: setup-test
	$(BIN)/python -m bench turntaking recognition

manifests: setup
	scripts/render-manifests.sh

# Images, where Docker exists (not needed for tests): make docker TAG=0.1.0
TAG ?= 0.1.0
docker:
	@command -v docker >/dev/null || { echo "docker not found; see docs/deploy.md" >&2; exit 1; }
	docker build -f Dockerfile.agent -t voicepool/agent:$(TAG) .
	docker build -f Dockerfile.operator -t voicepool/operator:$(TAG) .

clean:
	rm -rf $(VENV) .tools frontend/node_modules frontend/dist .pytest_cache .mypy_cache .ruff_cache
