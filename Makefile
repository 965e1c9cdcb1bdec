# qorchestra: `make demo` runs the sample job on the embedded stack, `make test` runs the suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck imports unit proto up clean bench docs

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/qorch demo

up: $(STAMP)
	$(VENV)/bin/qorch up

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy api orchestrator nodes qorch qorchestra migrations tests bench deploy/kafka_acls.py

# The house's floors (../shared/DESIGN.md), as import-linter contracts in pyproject.toml.
imports: $(STAMP)
	$(VENV)/bin/lint-imports

test: lint typecheck imports
	$(PY) -m pytest -q

# Regenerates the committed protobuf/gRPC modules from proto/*.proto.
proto: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH $(PY) -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. --mypy_out=. \
		--mypy_grpc_out=. proto/qorch/v1/*.proto
	rm -f proto/qorch/v1/fragments_pb2_grpc.py* proto/qorch/v1/nodes_pb2_grpc.py* proto/qorch/v1/signed_pb2_grpc.py*  # no services there

# Figures only: the executor, the pipeline vs run_batch, overhead, scale, event latency.
# docs/performance.md has the latest figures.
bench: $(STAMP)
	$(PY) bench/throughput.py
	$(PY) bench/latency.py

# Regenerates docs/configuration.md from qorchestra/config.py (tests/unit/test_docs.py checks it).
docs: $(STAMP)
	$(PY) -m qorchestra.config_docs > docs/configuration.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
