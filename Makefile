PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

# The wheel installed alone, with the core's dependencies only, outside the source tree.
WHEEL_VENV := build/wheel-venv

.PHONY: demo quick test test-pythons bench bench-compare lint dist check-dist docs clean

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
	$(BIN)/python -m pip install -q -e '.[grpc,http,fastapi]' 'redis>=5'
	@touch $@

# The shop's ports: make demo PORT=8081 GRPC_PORT=50052
PORT ?= 8080
GRPC_PORT ?= 50051
demo: $(VENV)/.demo
	$(BIN)/python examples/demo.py
	@echo
	@# -- the gRPC orders service: a client's calls, then a clean stop --
	$(BIN)/python -m examples.orders_grpc.demo
	@echo
	@# -- end of the gRPC step --
	$(BIN)/python -m examples.shop.demo --port $(PORT) --grpc-port $(GRPC_PORT)

lint: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict di tests/typing
	$(BIN)/mypy --strict --python-version 3.13 di tests/typing
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_shape.py di

# The loop of a first change: the lint that takes seconds, then one layer's tests
# (`make quick TESTS=tests/health`, or a file, or `TESTS="tests/wire -k probe"`), on one
# Python; `make test` runs everything before a change is proposed.
TESTS ?= tests/container
quick: $(VENV)/.test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict di tests/typing
	$(BIN)/lint-imports
	$(BIN)/pytest $(TESTS) -n 4 -q -x

docs: $(VENV)/.test
	$(BIN)/mkdocs build --strict --site-dir site

# The suite mostly waits (on servers, timeouts and threads), so it runs three workers
# per core of a 2-core machine: `make test PYTEST_WORKERS=8`, or 0 for one process.
PYTEST_WORKERS ?= 6

test: lint docs check-dist test-pythons

# The suite on every CPython from 3.11 up that the machine has, one version after
# another, each in its own venv made as .venv is (.venv-3.12, ...); scripts/pythons.py
# says where it looked, which versions ran and which it could not find.
# `make test-pythons TEST_PYTHONS="3.11 3.13"` runs those versions only.
TEST_PYTHONS ?=
test-pythons: $(VENV)/.test
	TEST_PYTHONS="$(TEST_PYTHONS)" MAKE="$(MAKE)" $(BIN)/python scripts/pythons.py \
		-n $(PYTEST_WORKERS) --dist worksteal

dist: $(VENV)/.test
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

check-dist: dist
	$(BIN)/twine check --strict dist/*
	rm -rf $(WHEEL_VENV)
	$(PYTHON) -m venv --without-pip $(WHEEL_VENV)
	$(BIN)/python -m pip --python $(WHEEL_VENV)/bin/python install -q dist/*.whl
	cd $(WHEEL_VENV) && bin/python -c "$$CHECK_WHEEL"
	$(WHEEL_VENV)/bin/di --version
	@# The command with the core alone: probe needs only the standard library, and serve
	@# names the extra it lacks.
	$(WHEEL_VENV)/bin/di probe http://127.0.0.1:9/ --timeout 1 | grep '^unhealthy: '
	$(WHEEL_VENV)/bin/di serve any:app --http 127.0.0.1:0 2>&1 \
		| grep -F "serving HTTP needs the http extra (httptools is not installed)"
	$(WHEEL_VENV)/bin/di run any:app 2>&1 \
		| grep -F "di run needs the http extra (uvicorn is not installed)"
	@# An integration imported without its extra names the extra to install.
	$(WHEEL_VENV)/bin/python -c "import di.integrations.fastapi" 2>&1 \
		| grep -F "di.integrations.fastapi needs the fastapi extra (fastapi is not installed): pip install 'healthdi[fastapi]'"

bench: $(VENV)/.bench
	$(BIN)/python -m benchmarks

# The package at COMPARE_REF beside the working tree, row by row (benchmarks/compare.py).
COMPARE_REF ?= before-shape
bench-compare: $(VENV)/.bench
	$(BIN)/python -m benchmarks --compare $(COMPARE_REF)

clean:
	rm -rf $(VENV) $(VENV)-3.* .pytest_cache .mypy_cache .ruff_cache benchmarks/results/*.json dist build site

define CHECK_WHEEL
import importlib.metadata as metadata, importlib.util
import di
assert "site-packages" in di.__file__, di.__file__
assert di.__version__ == metadata.version("healthdi"), di.__version__
files = [str(f) for f in metadata.distribution("healthdi").files]
assert any(f.endswith(".dist-info/licenses/LICENSE") for f in files), files
extras = [m for m in ("grpc", "uvicorn", "httptools", "trio") if importlib.util.find_spec(m)]
assert not extras, f"the core alone installed {extras}"
command = {f"di/_cli/{m}.py" for m in ("__init__", "commands", "probe", "h2", "serve", "run")}
command |= {f"di/_serving/{m}.py" for m in ("__init__", "http_server", "listeners")}
assert command <= set(files), sorted(command - set(files))
# The status page's own script and style ship in the wheel, and the health app serves them.
import di.asgi, di._ui as ui
assert {"di/_ui/page.js", "di/_ui/page.css"} <= set(files), files
assert all(answer.body for answer in ui.ASSETS.values())
print(f"the wheel alone: import di {di.__version__} from {di.__file__}")
endef
export CHECK_WHEEL
