"""Rank-collapse analysis of a trained checkpoint on its evaluation data.

    python -m hopfield_attention.analyze ckpt_path=logs/runs/<experiment>/<time>/checkpoints/last.ckpt
    python -m hopfield_attention.analyze ckpt_path=<file> n_batches=16 split=test device=cuda

Per layer (1 = after the first block): pairwise cosine similarity of token representations (mean, std,
and a random sample for violin plots), effective rank (Roy & Vetterli 2007) and attention entropy.
Writes <run dir>/analysis/<checkpoint name>.json and <checkpoint name>_cosine_violin.{png,pdf}
(out_dir=... elsewhere). `make tables` then draws softmax against MHA from all analysis files.
Arguments are key=value overrides of `AnalyzeConfig`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING, OmegaConf

from hopfield_attention.analysis.evaluate import analyze_checkpoint, dumps, write_analysis

log = logging.getLogger("hopfield_attention.analyze")


@dataclass
class AnalyzeConfig:
    ckpt_path: str = MISSING  # a checkpoint written by hopfield_attention.train
    n_batches: int = 8  # evaluation batches measured (the first ones of the split)
    split: str = "val"  # val | test
    device: str = "auto"  # auto (cuda when available) | cpu | cuda | cuda:1 ...
    samples_per_batch: int = 4096  # cosine values kept per layer and batch for the violins (means use all)
    seed: int = 0  # of that subsample
    attention_entropy: bool = True
    out_dir: str | None = None  # default <run dir>/analysis


def main(argv: list[str] | None = None) -> list[Path]:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return []
    cfg = OmegaConf.merge(OmegaConf.structured(AnalyzeConfig), OmegaConf.from_dotlist(args))
    if OmegaConf.is_missing(cfg, "ckpt_path"):
        raise ValueError("ckpt_path=<checkpoint file> is required")
    cfg: AnalyzeConfig = OmegaConf.to_object(cfg)
    result = analyze_checkpoint(cfg.ckpt_path, n_batches=cfg.n_batches, split=cfg.split, device=cfg.device,
                                samples_per_batch=cfg.samples_per_batch, seed=cfg.seed,
                                attention_entropy=cfg.attention_entropy)  # fmt: skip
    written = write_analysis(result, cfg.out_dir)
    print(dumps(result))
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main()
