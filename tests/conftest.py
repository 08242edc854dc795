"""Suite-wide settings: the tests run offline, on the CPU, with tiny models."""

import os

# Set before any Hugging Face or W&B import, so a plain `pytest` behaves like `make test`.
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MPLBACKEND", "Agg")


# The end-to-end modules: each runs the real commands (training, sweeps, signals, SLURM, the docs' commands) and
# takes minutes on two CPU cores. `make test-fast` (--fast-lane) leaves them to `make test`.
FULL_SUITE_ONLY = {
    "test_analysis_cli", "test_bad_inputs", "test_bench_attention", "test_data_ddp", "test_docs", "test_full_disk",
    "test_gpu_check", "test_lm_eval_client", "test_packaging", "test_paper_small", "test_prepare", "test_quickstart", "test_readings_study",
    "test_records_defensive", "test_results_record", "test_resume_newest", "test_run_ownership", "test_run_signals",
    "test_sweep_resume", "test_token_cache_checks", "test_train_language", "test_train_offline", "test_train_resume",
    "test_train_vision", "test_backbones_remote_code", "test_recipes_global_batch",
}  # fmt: skip


def pytest_addoption(parser):
    parser.addoption("--fast-lane", action="store_true", help="leave out the end-to-end modules (FULL_SUITE_ONLY)")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--fast-lane"):
        return
    kept = [item for item in items if item.module.__name__.rsplit(".", 1)[-1] not in FULL_SUITE_ONLY]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept
