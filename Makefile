# `make test` is the one test command (README.md, .ci/run). It installs what it needs:
# uv (from PyPI, into .tools/), one environment per package (.venvs/<name>, from uv.lock),
# and redis-server (apt) when missing; then lint, type check and every package's tests in
# that package's own environment, so a dependency a package forgot fails here, not in prod.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION ?= 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENVS := .venvs
PYTEST_ARGS ?=
PYTEST := -m pytest -p no:cacheprovider --timeout=600 $(PYTEST_ARGS)

# package name -> its tests; each runs in .venvs/<name> built with `uv sync --package`.
PACKAGES := core http tts uploader xtts gateway
core_PKG := genstack-core
core_TESTS := libs/core/tests
http_PKG := genstack-http
http_TESTS := libs/http/tests
tts_PKG := genstack-tts
tts_TESTS := libs/tts/tests
uploader_PKG := genstack-uploader
uploader_TESTS := services/uploader/tests
xtts_PKG := genstack-xtts
xtts_TESTS := services/xtts/tests
gateway_PKG := genstack-gateway
gateway_TESTS := services/gateway/tests

.PHONY: help test install lint typecheck unit-% env-% env-stack test-stack redis-server uv clean

help:
	@echo "make test       install everything needed, lint, type check, run every test suite"
	@echo "make lint       ruff check + format check"
	@echo "make typecheck  mypy --strict on every package"
	@echo "make clean      remove .tools and .venvs"

test: install lint typecheck $(addprefix unit-,$(PACKAGES)) test-stack

uv: $(UV)
$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

redis-server:
	@if ! command -v redis-server >/dev/null; then \
	  echo "redis-server missing: installing it with apt"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server; \
	fi

# Each package's environment from the lock file; the stack env has every package and tools.
install: redis-server $(addprefix env-,$(PACKAGES)) env-stack

env-%: $(UV)
	@echo "== uv sync --package $($*_PKG) -> $(VENVS)/$*"
	@UV_PROJECT_ENVIRONMENT=$(VENVS)/$* $(UV) sync --locked --quiet --package $($*_PKG)

env-stack: $(UV)
	@echo "== uv sync --all-packages -> $(VENVS)/stack"
	@UV_PROJECT_ENVIRONMENT=$(VENVS)/stack $(UV) sync --locked --quiet --all-packages

lint:
	$(VENVS)/stack/bin/ruff check .
	$(VENVS)/stack/bin/ruff format --check .

typecheck:
	$(VENVS)/stack/bin/mypy -p genstack.core -p genstack.http -p genstack.tts -p genstack.uploader -p genstack.xtts -p genstack.gateway -p genstack.testing

unit-%:
	@echo "== tests of $* in $(VENVS)/$*"
	$(VENVS)/$*/bin/python $(PYTEST) $($*_TESTS)

test-stack:
	@echo "== cross-service tests and the harness's own tests in $(VENVS)/stack"
	$(VENVS)/stack/bin/python $(PYTEST) tests

clean:
	rm -rf $(TOOLS) $(VENVS)
