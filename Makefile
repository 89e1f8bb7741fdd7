PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench lint docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.test: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

$(VENV)/.bench: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[bench,grpc,http]'
	@touch $@

$(VENV)/.demo: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[grpc,http]' 'redis>=5'
	@touch $@

demo: $(VENV)/.demo
	$(BIN)/python examples/demo.py
	@echo
	$(BIN)/python -m examples.shop.demo

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict di

docs: $(VENV)/.test
	$(BIN)/mkdocs build --strict --site-dir site

test: lint docs
	$(BIN)/pytest

bench: $(VENV)/.bench
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache benchmarks/results/*.json
