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
# uv.lock forks where a package's pins clash with the rest ([tool.uv] conflicts in the root
# pyproject.toml); uv 0.13 reads that table only with this preview feature on.
export UV_PREVIEW_FEATURES := package-conflicts

# Every folder under libs/ and services/ with a pyproject.toml is a package, and so is deploy/
# (the service description, `make up`, the pod image): adding one needs no edit here. Its
# folder name is its short name (env-<name>, unit-<name>, .venvs/<name>); its distribution and
# module names are read from its pyproject.toml; its tests are <folder>/tests.
PACKAGE_DIRS := $(patsubst %/pyproject.toml,%,$(sort $(wildcard libs/*/pyproject.toml services/*/pyproject.toml deploy/pyproject.toml)))
PACKAGES := $(notdir $(PACKAGE_DIRS))
# The harness (genstack.testing) is type checked too; its tests run in the stack env.
TYPED_DIRS := $(PACKAGE_DIRS) tests/harness
package_dir = $(filter %/$(1) $(1),$(PACKAGE_DIRS))
toml_value = $(shell sed -n 's/^$(2) *= *"\(.*\)"/\1/p' $(1)/pyproject.toml | head -n 1)
package_name = $(call toml_value,$(call package_dir,$(1)),name)
# Packages whose pins clash with the rest (chatterbox: numpy < 2, transformers 5.2.0): they
# live only in their own env; the stack env has every other package and reaches them over
# HTTP (the cross-service tests start their servers from .venvs/<name>).
OWN_ENV_PACKAGES := chatterbox
STACK_PACKAGES := $(filter-out $(OWN_ENV_PACKAGES),$(PACKAGES))
MODULES := $(foreach d,$(TYPED_DIRS),$(call toml_value,$(d),module-name))
empty :=
space := $(empty) $(empty)
export MYPYPATH := $(subst $(space),:,$(addsuffix /src,$(TYPED_DIRS)))

.PHONY: help test install lint typecheck unit-% env-% env-stack test-stack redis-server uv clean \
	print-packages up

help:
	@echo "make up         install what it needs, then run the whole stack here in the foreground"
	@echo "                (no Docker; ENABLE_XTTS, ENABLE_CHATTERBOX, COMFYUI_DIR: docs/up.md)"
	@echo "make test       install everything needed, lint, type check, run every test suite"
	@echo "make lint       ruff check + format check"
	@echo "make typecheck  mypy --strict on every package"
	@echo "make unit-NAME  one package's tests in its own env (NAME: $(PACKAGES))"
	@echo "make env-NAME   build that package's env .venvs/NAME from uv.lock"
	@echo "make print-packages  each package: short name, distribution, module, tests"
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

# Each package's environment from the lock file; the stack env has every package (but
# OWN_ENV_PACKAGES) and the tools.
install: redis-server $(addprefix env-,$(PACKAGES)) env-stack

env-%: $(UV)
	@echo "== uv sync --package $(call package_name,$*) -> $(VENVS)/$*"
	@UV_PROJECT_ENVIRONMENT=$(VENVS)/$* $(UV) sync --locked --quiet --package $(call package_name,$*)

env-stack: $(UV)
	@echo "== uv sync (every package but $(OWN_ENV_PACKAGES)) -> $(VENVS)/stack"
	@UV_PROJECT_ENVIRONMENT=$(VENVS)/stack $(UV) sync --locked --quiet \
	  $(foreach p,$(STACK_PACKAGES),--package $(call package_name,$(p))) --package genstack-testing

lint:
	$(VENVS)/stack/bin/ruff check .
	$(VENVS)/stack/bin/ruff format --check .

typecheck:
	$(VENVS)/stack/bin/mypy $(addprefix -p ,$(MODULES))

unit-%:
	@echo "== tests of $* in $(VENVS)/$*"
	$(VENVS)/$*/bin/python $(PYTEST) $(call package_dir,$*)/tests

test-stack:
	@echo "== cross-service tests and the harness's own tests in $(VENVS)/stack"
	$(VENVS)/stack/bin/python $(PYTEST) tests

# The whole stack as local processes under supervisord, in the foreground (docs/up.md). First
# what it needs, as `make test` installs it: redis-server, the deploy env, then the env of
# every service the environment turns on (genstack-deploy envs names them). The recipe's shell
# becomes genstack-deploy, which becomes supervisord: make's SIGTERM (and a terminal's Ctrl-C)
# reach supervisord, which stops every service within its grace period, Redis last.
up: redis-server env-deploy
	@envs="$$($(VENVS)/deploy/bin/genstack-deploy envs)"; \
	  $(MAKE) --no-print-directory $$envs; \
	  exec $(VENVS)/deploy/bin/genstack-deploy up --checkout .

print-packages:
	@$(foreach p,$(PACKAGES),echo "$(p) $(call package_name,$(p)) \
	  $(call toml_value,$(call package_dir,$(p)),module-name) $(call package_dir,$(p))/tests";)

clean:
	rm -rf $(TOOLS) $(VENVS)
