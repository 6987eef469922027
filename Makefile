# Two entry points, each doing its own install on a fresh machine with Python 3.11+:
#   make demo    sets up .venv and runs the main job (dlib on the public AT&T demo set, or DATA=folder)
#   make test    sets up .venv and runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= results
STAMP := $(VENV)/.installed

.PHONY: demo evaluate test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/faceval demo --out $(OUT)/demo $(if $(DATA),--data $(DATA),)

evaluate: $(STAMP)
	@test -n "$(DATA)" || { echo "usage: make evaluate DATA=path/to/faces [MODEL=dlib]"; exit 2; }
	$(BIN)/faceval evaluate $(DATA) --model $(or $(MODEL),dlib) --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_bootstrap.py
	$(BIN)/python benchmarks/bench_identify.py
	$(BIN)/python benchmarks/bench_extraction.py
	$(BIN)/python benchmarks/bench_onnx.py
	$(BIN)/python benchmarks/bench_scale.py
	$(BIN)/python benchmarks/bench_score_files.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache
