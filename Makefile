# The two commands a newcomer needs (see README): `make serve` and `make test`.
# Everything else here is what they are made of.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test install-serve install-test system-deps lint proto bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Serving + the training extra: offline, without official weights, the service falls back to
# models it exports itself, which needs torch (exactly torch==2.13.0: see pyproject.toml).
install-serve: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[serve,train]"

serve: install-serve
	$(BIN)/rtmserve serve

# System packages the tests use as real components (Prometheus for the metrics tests).
system-deps:
	./tools/install-system-deps.sh

install-test: $(BIN)/python system-deps
	$(BIN)/pip install --quiet -e ".[serve,train,dev]"

test: install-test
	$(BIN)/ruff check .
	$(BIN)/pytest -ra --durations=15

lint: $(BIN)/python
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install-test
	$(BIN)/python bench/serve_throughput.py

# Regenerate the committed gRPC stubs (service/api/gen/) from proto/ after editing a .proto.
proto: $(BIN)/python
	$(BIN)/pip install --quiet "$$(grep -o 'grpcio-tools==[0-9.]*' pyproject.toml)"
	$(BIN)/python tools/gen_protos.py
