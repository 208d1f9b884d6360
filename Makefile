# The whole set-up of a fresh clone: every target creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run-chat run-echo test bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Stamps record which install is done; pyproject.toml changes redo it.
$(VENV)/.run-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.test-deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.run-deps

run-chat: $(VENV)/.run-deps
	$(BIN)/netlab chat serve $(ARGS)

run-echo: $(VENV)/.run-deps
	$(BIN)/netlab echo serve $(ARGS)

# Three tests at a time (pytest-xdist): most of a test is waiting on a server or a process
# start, so three keep two cores busy; ARGS="-n 0" runs one at a time.
test: $(VENV)/.test-deps
	$(BIN)/python -m pytest -n 3 $(ARGS)

bench: $(VENV)/.run-deps
	$(BIN)/netlab bench echo --conns 100 --size 64 --duration 5
	$(BIN)/netlab bench chat --clients 100 --senders 10 --duration 5

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
