"""Rank-collapse analysis of a trained checkpoint on its evaluation data.

    python -m hopfield_attention.analyze ckpt_path=logs/runs/<experiment>/<time>/checkpoints/last.ckpt
    python -m hopfield_attention.analyze ckpt_path=<file> n_batches=16 split=test device=cuda
    python -m hopfield_attention.analyze 'ckpt_path=[<run>/checkpoints/init.ckpt,<run>/checkpoints/last.ckpt]'

Per layer (1 = after the first block): pairwise cosine similarity of token representations (mean, std,
and a random sample for violin plots), effective rank (Roy & Vetterli 2007) and attention entropy.
Writes <run dir>/analysis/<checkpoint name>.json and <checkpoint name>_cosine_violin.{png,pdf}
(out_dir=... elsewhere). `make tables` then draws softmax against MHA from all analysis files.
Options: configs/analyze.yaml (Hydra overrides).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .analysis.evaluate import analyze_checkpoint, dumps, write_analysis
from .cli.app import hydra_command
from .config.schema import check_options


def analyze(cfg: DictConfig) -> list[Path]:
    check_options(cfg, "analyze")  # types and ranges of the options, a device this machine has
    paths = list(cfg.ckpt_path) if OmegaConf.is_list(cfg.ckpt_path) else [cfg.ckpt_path]
    if not paths:
        raise ValueError("ckpt_path must name a checkpoint (or a list of them), got an empty list")
    written = []
    for ckpt_path in paths:
        result = analyze_checkpoint(ckpt_path, n_batches=cfg.n_batches, split=cfg.split, device=cfg.device,
                                    samples_per_batch=cfg.samples_per_batch, seed=cfg.seed,
                                    attention_entropy=cfg.attention_entropy)  # fmt: skip
        written += write_analysis(result, cfg.out_dir)
        print(dumps(result))
    for path in written:
        print(path)
    return written


main = hydra_command("analyze")(analyze)

if __name__ == "__main__":
    main()
