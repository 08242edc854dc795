"""The rank-collapse measures of a trained checkpoint on its own evaluation data.

The checkpoint alone rebuilds the task and the datamodule (tasks.load_task); results go to
<run dir>/analysis/<checkpoint name>.json (+ a cosine violin figure), where <run dir> holds checkpoints/.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ..config.schema import check_device
from ..runs.provenance import git_state, utc_now
from ..runs.record import write_record
from .meter import RankCollapseMeter
from .probe import RankCollapseProbe, rebuild_from_task

SPLITS = {"val": "val_dataloader", "test": "test_dataloader"}


def run_dir_of(ckpt_path: Path) -> Path:
    """<run dir> for <run dir>/checkpoints/<name>.ckpt, else the checkpoint's own folder."""
    return ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent


def analyze_checkpoint(
    ckpt_path: str | Path, *, n_batches: int = 8, split: str = "val", device: str = "auto",
    samples_per_batch: int = 4096, seed: int = 0, attention_entropy: bool = True,
) -> dict:  # fmt: skip
    """Measure the first `n_batches` batches of the checkpoint's `split`; returns the analysis dict."""
    from ..tasks import load_task

    ckpt_path = Path(ckpt_path)
    if not ckpt_path.is_file():
        raise ValueError(f"ckpt_path {str(ckpt_path)!r} is not a file")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if n_batches < 1:
        raise ValueError(f"n_batches must be >= 1, got {n_batches}")
    device = check_device(device)  # one line naming the value and what this machine allows

    module, cfg = load_task(ckpt_path, map_location="cpu")
    module.to(device)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("validate" if split == "val" else "test")
    loader = getattr(datamodule, SPLITS[split])()

    probe = RankCollapseProbe(module.model, attention=attention_entropy, rebuild=rebuild_from_task(module))
    meter = RankCollapseMeter(samples_per_batch=samples_per_batch, seed=seed)
    seen = 0
    for batch in islice(loader, n_batches):
        probe.measure(_to(batch, device), meter)
        seen += 1
    measured = meter.compute()
    paper = OmegaConf.to_container(cfg.paper, resolve=True) if cfg.get("paper") else {}
    return {
        "ckpt_path": str(ckpt_path.resolve()),
        "experiment": cfg.get("experiment"),
        "paper": paper,
        "attention": OmegaConf.to_container(cfg.attention, resolve=True),
        "kind": paper.get("column") or cfg.attention.name,  # the label in figures
        "model": cfg.model.name,
        "data": cfg.data.name,
        "split": split,
        "n_batches": seen,
        "device": str(device),
        "git": git_state(Path(__file__).parent),
        "created_at": utc_now(),
        "definitions": {
            "cos": "cosine of token representations after each block, all pairs i<j per sequence, pooled",
            "eff_rank": "Roy & Vetterli 2007: exp(entropy of singular values / their sum), per sequence, mean",
            "attn_entropy": "entropy of each attention row in nats (padded queries excluded), mean over rows",
        },
        **measured,
    }


def write_analysis(result: dict, out_dir: str | Path | None = None) -> list[Path]:
    """<out_dir or run dir/analysis>/<ckpt stem>.json and its violin figure (.png, .pdf)."""
    from ..reports.figures import cosine_violins, save_figure

    ckpt_path = Path(result["ckpt_path"])
    out_dir = Path(out_dir) if out_dir else run_dir_of(ckpt_path) / "analysis"
    path = out_dir / f"{ckpt_path.stem}.json"
    write_record(path, result)
    fig = cosine_violins({result["kind"]: {int(k): v for k, v in result["cos_samples"].items()}},
                         title=f"Token cosine similarity, {result['model']} ({result['kind']})")  # fmt: skip
    return [path, *save_figure(fig, out_dir / f"{ckpt_path.stem}_cosine_violin")]


def _to(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(v, device) for v in batch)
    return batch


def dumps(result: dict) -> str:
    """The per-layer summary as JSON text (no samples), for printing."""
    return json.dumps(result["layers"], indent=2)
