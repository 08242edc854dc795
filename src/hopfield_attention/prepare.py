"""Prepare a run's data once: `python -m hopfield_attention.prepare experiment=<name> [overrides]`.

Composes exactly the training config (config `train` from train.py's config directory, the same overrides),
then builds what the run will read: the token cache of every stage (language; the tokenizer too, where the
data set trains its own), or the Hugging Face Arrow copy of the dataset (vision: downloaded, converted and
checked by decoding and transforming one image of every split). It prints what it found or built, where,
and how long it took. Nothing is trained.

Run it before a distributed run: under DDP a run whose data is not prepared stops at once on every rank
and says so, because preparing it there would keep the other ranks waiting at a barrier past the
process-group timeout (data/errors.py). On SLURM: `sbatch slurm/prepare.sbatch experiment=<name>`, then the
training job with `--dependency=afterok:<id>`. The log of a preparation goes to
logs/prepare/<experiment>/<time>/ (configs/prepare.yaml).
"""

from __future__ import annotations

import time
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from .cli.app import hydra_command, save_config
from .config import resolvers  # noqa: F401  (the ha.* resolvers: a recipe's data.batch_size is one)
from .data import LanguageDataModule, VisionDataModule
from .data.token_cache import TokenCacheMismatch


def prepare(cfg: DictConfig) -> dict:
    """Build (or find) the data of the run `cfg` describes; returns what was done, as printed."""
    save_config(cfg)  # its log folder says what was prepared
    datamodule = instantiate(cfg.data)
    started = time.perf_counter()
    if isinstance(datamodule, LanguageDataModule):
        report = prepare_language(datamodule)
    elif isinstance(datamodule, VisionDataModule):
        report = prepare_vision(datamodule)
    else:
        raise TypeError(f"data {cfg.data._target_!r} is neither a LanguageDataModule nor a VisionDataModule")
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(f"{report['dataset']}: prepared in {report['seconds']} s")
    return report


def prepare_language(datamodule: LanguageDataModule) -> dict:
    for stage in datamodule.stages:  # a token file that does not match its metadata is built again
        try:
            datamodule.cached(stage)
        except TokenCacheMismatch as error:
            print(f"rebuilding {stage}: {str(error).split('; rebuild it with')[0]}")
            datamodule.token_file_path(stage).with_suffix(".json").unlink()  # marks it unfinished
    missing = set(datamodule.missing_stages())
    datamodule.prepare_data()
    datamodule.setup()
    stages = {}
    for stage, blocks in datamodule.blocks.items():
        token_file = blocks.token_file
        stages[stage] = {
            "status": "built" if stage in missing else "found",
            "tokens": token_file.num_tokens,
            "blocks": len(blocks),
            "bytes": token_file.path.stat().st_size,
            "path": str(token_file.path),
        }
        print(
            f"{datamodule.name} {stage}: {stages[stage]['status']} {token_file.num_tokens:,} tokens "
            f"({len(blocks):,} blocks of {datamodule.block_size}), {stages[stage]['bytes'] / 1e6:.1f} MB: {token_file.path}"
        )
    print(f"tokenizer: {datamodule.tokenizer.name_or_path} ({datamodule.vocab_size:,} tokens)")
    return {"dataset": datamodule.name, "kind": "language", "stages": stages}


def prepare_vision(datamodule: VisionDataModule) -> dict:
    was_prepared = datamodule.source.is_prepared()
    datamodule.prepare_data()
    datamodule.setup()
    stages = {}
    for stage, split in datamodule.data.items():
        image, label = split[0]  # decode and transform one image here, not in the first step of a GPU job
        folders = sorted({str(Path(f["filename"]).parent) for f in split.rows.cache_files})
        stages[stage] = {"images": len(split), "shape": list(image.shape), "cache": folders}
        print(
            f"{datamodule.name} {stage}: {len(split):,} images, transformed to {tuple(image.shape)}; Arrow copy in {', '.join(folders) or 'memory'}"
        )
    status = "found" if was_prepared else "built"
    print(f"{datamodule.name}: Arrow copy {status}")
    return {"dataset": datamodule.name, "kind": "vision", "status": status, "stages": stages}


main = hydra_command("prepare")(prepare)

if __name__ == "__main__":
    main()
