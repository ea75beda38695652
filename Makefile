# Two jobs: `make run` executes the notebooks headless (figures and metrics land in runs/),
# `make test` checks the house style (ruff), then runs the unit tests and the notebooks in smoke mode.
# Both set up .venv first.
# `make test-colab` runs the fast tests with the package versions Colab ships (constraints/colab.txt)
# beside this machine's torch, after checking that installing labkit there upgrades none of them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Colab and Kaggle bring their own torch; a local set-up installs this pair.
TORCH  := torch==2.14.1 torchvision==0.29.1

COLAB  := .venv-colab

.PHONY: setup run test test-colab clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BIN)/python -m labkit notebooks --out runs/notebooks
	@echo "Executed notebooks in runs/notebooks/; figures and metrics.json in runs/<model>/"

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	LABKIT_SMOKE=1 $(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider

$(COLAB)/.installed: pyproject.toml constraints/colab.txt
	rm -rf $(COLAB)
	$(PYTHON) -m venv $(COLAB)
	$(COLAB)/bin/python -m pip install --quiet --upgrade pip
	$(COLAB)/bin/python -m pip install --quiet $(TORCH)
	$(COLAB)/bin/python -m pip install --quiet -r constraints/colab.txt
	$(COLAB)/bin/python -m pip install --quiet --dry-run --report $(COLAB)/plan.json .
	$(COLAB)/bin/python .ci/no_upgrades.py $(COLAB)/plan.json
	$(COLAB)/bin/python -m pip install --quiet -c constraints/colab.txt -e ".[dev]"
	touch $@

test-colab: $(COLAB)/.installed
	LABKIT_SMOKE=1 $(COLAB)/bin/python -m pytest tests -m "not slow and not browser" -p no:cacheprovider -q

clean:
	rm -rf $(VENV) $(COLAB) runs
