# Two commands: `make run` (set up, start the app) and `make test` (set up, pass every test).
# `make hall REPLICAS=K`: K app servers behind HAProxy with a local Ray (kdviz/hall.py); Ctrl-C stops them all.
# kdviz reads server.toml with tomllib: Python 3.11 or newer. PYTHON (make PYTHON=...) or the first of these that is
# (looked up only when the virtual environment is made).
NEW_ENOUGH = $(if $(1),$(shell $(1) -c 'import sys; print(int(sys.version_info >= (3, 11)))' 2>/dev/null))
PYTHON ?= $(firstword $(foreach p,python3.11 python3.12 python3.13 python3,\
            $(if $(filter 1,$(call NEW_ENOUGH,$(p))),$(shell command -v $(p)))))
VENV := .venv
PY := $(VENV)/bin/python
REPLICAS ?= 2
HALL_PORT ?= 8500

.PHONY: run test hall prepare bench clean

run: $(VENV)/.runtime
	$(PY) -m kdviz.ui.serve run app.py

hall: $(VENV)/.runtime
	$(PY) -m kdviz.hall --replicas $(REPLICAS) --port $(HALL_PORT)

test: $(VENV)/.dev
	bash .ci/ensure-chromium
	bash .ci/ensure-fashion-mnist
	$(PY) -m pytest

prepare: $(VENV)/.runtime
	$(PY) -m kdviz prepare

bench: $(VENV)/.dev
	for script in bench/bench_*.py; do PYTHONPATH=. $(PY) $$script || exit 1; done

$(VENV)/bin/python:
	$(if $(filter 1,$(call NEW_ENOUGH,$(PYTHON))),,$(error kdviz needs Python >= 3.11 (tomllib) and found \
	  $(or $(PYTHON),none): install python3.11 or newer, or run make PYTHON=/path/to/python3.11))
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt requirements-lock.txt | $(VENV)/bin/python
	bash .ci/install-locked $(PY) || $(PY) -m pip install -q -r requirements-dev.txt
	touch $(VENV)/.runtime $@

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis screenshots
