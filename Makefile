# Two entry points a fresh clone needs: `make app` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 7860

.PHONY: app test test-fast train evaluate export clean

# The first install downloads about 3 GB (torch) and takes a few minutes: pip shows its progress.
# The project itself is installed too (editable), so `import ser_model` works from any folder.
$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "Installing the requirements into $(VENV): a few minutes the first time."
	$(BIN)/pip install --upgrade --progress-bar on pip
	$(BIN)/pip install --progress-bar on -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install --no-deps --no-build-isolation -e .
	touch $@

## Start the demo on the bundled model at http://127.0.0.1:$(PORT) (`make app PORT=8080` for another port)
app: $(BIN)/.installed
	$(BIN)/python app.py --port $(PORT)

## Run the whole test suite (slow tests included; they skip with a reason where data or tools are absent)
test: $(BIN)/.installed
	$(BIN)/python -m pytest

## Only the fast unit tests
test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -m "not slow"

## Train the shipped recipe on every corpus in ../shared/data: continue from the RAVDESS+TESS model
## in model-ravdess-tess/ for 12 epochs (about 30 minutes on 2 idle CPU cores; run it again to resume)
train: $(BIN)/.installed
	$(BIN)/python -m ser_model train --output_dir runs/cpu-small --cache_dir runs/cache --init_model model-ravdess-tess \
		--learning_rate 1e-3 --num_train_epochs 12

## Score it on the held-out speakers per corpus, with the baseline, the robustness table and calibration
evaluate: $(BIN)/.installed
	$(BIN)/python -m ser_model evaluate --model runs/cpu-small/best

## Copy the trained model, its report and a generated model card into model/
export: $(BIN)/.installed
	$(BIN)/python -m ser_model export --model runs/cpu-small/best --output model

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
