# Two entry points a fresh clone needs: `make app` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 7860

.PHONY: app test test-fast train evaluate export clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $@

## Start the demo on the bundled model at http://127.0.0.1:$(PORT)
app: $(BIN)/.installed
	$(BIN)/python app.py --port $(PORT)

## Run the whole test suite (slow tests included; they skip with a reason where data or tools are absent)
test: $(BIN)/.installed
	$(BIN)/python -m pytest

## Only the fast unit tests
test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -m "not slow"

## Train the default preset from scratch on ../shared/data (about 20 minutes on 2 CPU cores)
train: $(BIN)/.installed
	$(BIN)/python -m ser_model train --output-dir runs/cpu-small

## Score it on the held-out speakers, with the baseline
evaluate: $(BIN)/.installed
	$(BIN)/python -m ser_model evaluate --model runs/cpu-small/best

## Copy the trained model, its report and a generated model card into model/
export: $(BIN)/.installed
	$(BIN)/python -m ser_model export --model runs/cpu-small/best --output model

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
