"""End to end on the real pieces: train two tiny quickstart runs, analyse their checkpoints, make tables."""

import json

import pytest
from hydra import compose, initialize_config_dir

from hopfield_attention.analyze import analyze
from hopfield_attention.tables import tables
from hopfield_attention.train import CONFIG_DIR, train

from support.commands import composed, error_message, run_command
from support.data import write_shakespeare_fixture


def analyze_main(overrides):
    return analyze(composed("analyze", overrides))


def tables_main(overrides):
    return tables(composed("tables", overrides))


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = write_shakespeare_fixture(root / "data")
    for experiment in ("quickstart_softmax", "quickstart_mha"):
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", overrides=[
                f"experiment={experiment}", "model=gpt2_tiny", "trainer.max_steps=3", "trainer.limit_val_batches=2",
                f"paths.log_dir={root / 'logs'}", f"paths.output_dir={root / 'logs' / 'runs' / experiment / 'r1'}",
                "callbacks.progress_bar=null", *[f"data.{key}={value}" for key, value in data.items()],
            ])  # fmt: skip
        train(cfg)
    return root


def test_analyze_writes_per_layer_measures_and_a_violin(trained_runs):
    ckpt = trained_runs / "logs" / "runs" / "quickstart_mha" / "r1" / "checkpoints" / "last.ckpt"
    written = analyze_main([f"ckpt_path={ckpt}", "n_batches=2", "samples_per_batch=100"])
    out = ckpt.parent.parent / "analysis"
    assert [p.name for p in written] == ["last.json", "last_cosine_violin.png", "last_cosine_violin.pdf"]
    assert all(p.parent == out and p.stat().st_size > 0 for p in written)
    result = json.loads((out / "last.json").read_text())
    assert result["kind"] == "MHA alpha=0.5" and result["model"] == "gpt2_tiny" and result["n_batches"] == 2
    assert [layer["layer"] for layer in result["layers"]] == [1, 2]
    for layer in result["layers"]:
        assert -1 <= layer["cos_mean"] <= 1 and 1 <= layer["eff_rank"] <= 32 and layer["attn_entropy"] > 0
        assert len(result["cos_samples"][str(layer["layer"])]) == 2 * 100


def test_tables_and_violins_from_the_runs(trained_runs):
    ckpt = trained_runs / "logs" / "runs" / "quickstart_softmax" / "r1" / "checkpoints" / "last.ckpt"
    analyze_main([f"ckpt_path={ckpt}", "n_batches=1"])
    written = tables_main([f"runs_dir={trained_runs / 'logs'}", f"out_dir={trained_runs / 'tables'}",
                           f"figures_dir={trained_runs / 'figures'}"])  # fmt: skip
    quick = (trained_runs / "tables" / "table_quickstart.md").read_text()
    row = next(line for line in quick.splitlines() if line.startswith("| GPT-2 quickstart |"))
    # A 2-layer model trained 3 steps is not the quickstart's cell: both runs are listed apart, with why.
    assert row.startswith("| GPT-2 quickstart | — | n/a | — | — |")
    apart = quick[quick.index("## Runs not in this table (2)") :]
    for experiment in ("quickstart_softmax", "quickstart_mha"):
        line = next(line for line in apart.splitlines() if f"/{experiment}/r1/results.json" in line)
        assert f"differs from experiment={experiment}: data.block_size" in line
    assert "model.name: 'gpt2_quickstart' -> 'gpt2_tiny'" in apart and "trainer.max_steps: 300 -> 3" in apart
    assert trained_runs / "figures" / "cosine_violin_gpt2-tiny_shakespeare_2-layers_trained.png" in written


def test_analyze_refuses_bad_arguments(tmp_path):
    missing = run_command("analyze")
    assert missing.returncode == 1 and error_message(missing.stderr) == "Error: Missing mandatory value: ckpt_path"
    with pytest.raises(ValueError, match="is not a file"):
        analyze_main([f"ckpt_path={tmp_path / 'missing.ckpt'}"])
    with pytest.raises(ValueError, match="n_batches must be an integer >= 1"):
        analyze_main([f"ckpt_path={tmp_path / 'missing.ckpt'}", "n_batches=0"])
