# Developer / CI entry points. Only python3 (>= 3.10) and make are assumed.
#
#   make venv   .venv with the package editable + extras synth,dev,cv (reinstalls when
#               setup.py, setup.cfg, constraints.txt or this Makefile change)
#   make test   ruff, import contracts, dead code (vulture), generated files current, mypy, pytest
#   make lint   the same without pytest
#   make demo   synthetic end-to-end demo into out/demo
#   make readme-pictures   make demo, then copy its pictures into docs/images (what the README shows)
#   make clean  remove the venv, caches and outputs

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
EXTRAS := synth,dev,cv,train,export

# The stamp's name carries a hash of everything that decides what gets installed, so a
# change to any of them makes the stamp missing and `make venv` reinstalls.
DEPS_FILES := setup.py setup.cfg constraints.txt Makefile
DEPS_HASH  := $(shell cat $(DEPS_FILES) 2>/dev/null | sha256sum | cut -c1-12)
STAMP      := $(VENV)/.installed-$(DEPS_HASH)

# pip prints one "Location ... is ignored" warning per index page it skips; drop them.
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt
PIP_FILTER  := { grep -v -e 'is ignored' -e '^$$' || true; }

.PHONY: venv test lint ruff imports deadcode generated mypy pytest demo readme-pictures clean

venv: $(STAMP)

$(STAMP):
	@test -x $(BIN)/python || { echo "creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@rm -f $(VENV)/.installed-*
	@echo "installing occ_ros[$(EXTRAS)] into $(VENV) (editable)"
	@$(PIP_INSTALL) -e '.[$(EXTRAS)]' 2>&1 | $(PIP_FILTER)
	@touch $@

ruff: venv
	$(BIN)/ruff check .

imports: venv
	$(BIN)/lint-imports --no-cache

VULTURE := $(BIN)/vulture occ_ros training export tools scripts bench launch vulture_whitelist.py --min-confidence 60

deadcode: venv
	$(VULTURE)

generated: venv
	$(BIN)/python scripts/gen_params.py --check

mypy: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/pytest -q

lint: ruff imports deadcode generated mypy

# Sequential on purpose: `make -j test` must still run the static checks in order, then pytest.
test: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(VULTURE)
	$(BIN)/python scripts/gen_params.py --check
	$(BIN)/mypy
	$(BIN)/pytest -q

demo: venv
	$(BIN)/occ demo --out out/demo

readme-pictures: demo
	$(BIN)/python scripts/readme_pictures.py --demo out/demo

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache .hypothesis build install log dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
