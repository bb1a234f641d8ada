# Two entry points a fresh clone needs: `make app` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 7860

.PHONY: app test test-fast train crossval evaluate export clean

# The first install downloads about 3 GB (torch) and takes a few minutes: pip shows its progress.
# The project itself is installed too (editable), so `import ser_model` works from any folder.
# Two stamp files say what is installed, each redone when its requirements change: the app's
# (requirements.txt and the project: all that `make app`, train, evaluate and export need), then the
# test tools on top (requirements-dev.txt: pytest, playwright, librosa), for `make test` only.
APP_INSTALLED := $(BIN)/.installed-app
DEV_INSTALLED := $(BIN)/.installed-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade --progress-bar on pip

$(APP_INSTALLED): requirements.txt pyproject.toml | $(BIN)/python
	@echo "Installing requirements.txt and this project into $(VENV): a few minutes the first time."
	$(BIN)/pip install --progress-bar on -r requirements.txt
	$(BIN)/pip install --no-deps --no-build-isolation -e .
	touch $@

# requirements.txt again, so that the test tools' dependencies cannot move the app's pins.
$(DEV_INSTALLED): requirements-dev.txt $(APP_INSTALLED)
	@echo "Installing the test tools (requirements-dev.txt) into $(VENV)."
	$(BIN)/pip install --progress-bar on -r requirements.txt -r requirements-dev.txt
	touch $@

## Start the demo on the bundled model at http://127.0.0.1:$(PORT) (`make app PORT=8080` for another port)
app: $(APP_INSTALLED)
	$(BIN)/python app.py --port $(PORT)

## Run the whole test suite (slow tests included; they skip with a reason where data or tools are absent)
test: $(DEV_INSTALLED)
	$(BIN)/python -m pytest

## Only the fast unit tests
test-fast: $(DEV_INSTALLED)
	$(BIN)/python -m pytest -m "not slow"

# The pretrained Whisper encoder of the speech branch: a Hub id, or a folder in the Hub's layout
# (`make train SPEECH_ENCODER=openai/whisper-base` where the Hub can be reached).
SPEECH_ENCODER ?= ../shared/weights/whisper-base

## Train the shipped recipe on every corpus in ../shared/data: the mel and MFCC branches of model-mel-mfcc/,
## the frozen pretrained Whisper encoder and fresh heads, 6 epochs (about 20 minutes on 2 idle CPU cores;
## run it again to resume)
train: $(APP_INSTALLED)
	$(BIN)/python -m ser_model train --output_dir runs/whisper-base --cache_dir runs/cache --init_model model-mel-mfcc \
		--split model-mel-mfcc/split.json --speech_encoder $(SPEECH_ENCODER) --learning_rate 1e-3 --num_train_epochs 6

## Cross-validate the Whisper branch's head (one augmented copy per clip) over 5 speaker folds, then with each
## corpus left out in turn: runs/crossval/*/crossval.md. About an hour on 2 cores the first time (the frozen
## encoder's statistics of every clip and copy are computed and cached in runs/cache), minutes after that
crossval: $(APP_INSTALLED)
	$(BIN)/python -m ser_model crossval --output_dir runs/crossval/head-c1 --copies 1 --cache_dir runs/cache \
		--speech_encoder $(SPEECH_ENCODER)
	$(BIN)/python -m ser_model crossval --output_dir runs/crossval/loco-head-c1 --loco --copies 1 \
		--cache_dir runs/cache --speech_encoder $(SPEECH_ENCODER)

## Score it on the held-out speakers per corpus, with the baseline, the robustness table and calibration
evaluate: $(APP_INSTALLED)
	$(BIN)/python -m ser_model evaluate --model runs/whisper-base/best

## Copy the trained model, its report and a generated model card into model/
export: $(APP_INSTALLED)
	$(BIN)/python -m ser_model export --model runs/whisper-base/best --output model

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
