"""Token uniformity at initialization of deep models: mean pairwise token cosine per layer, softmax against MHA.

    python scripts/uniformity_at_init.py [--out results/uniformity_at_init.json]

Builds GPT-2 Medium-shaped models (24 x 1024, 16 heads; transformers' own initialisation) and a 24-block
ViT-Base-shaped timm model, each as softmax, as MHA alpha = alpha' = 0.5 under every reading of configs/reading/,
and as MHA's state alone (alpha = None, alpha' = 0.5), with the same seed, and measures the residual stream after
every block on a few inputs (GPT-2: the first validation blocks of the Shakespeare plays, 64 tokens, through the
quickstart's tokenizer; ViT: Gaussian images): no training, so this says what each placement of alpha does before
any learning. The measure is analysis/measures.py's (RankCollapseProbe), the same as `analyze`.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from hopfield_attention.analysis.meter import RankCollapseMeter
from hopfield_attention.analysis.probe import RankCollapseProbe
from hopfield_attention.backbones.build import gpt2, vit
from hopfield_attention.config.locations import SOURCE_CHECKOUT as REPOSITORY_DIR

READINGS = sorted(path.stem for path in (REPOSITORY_DIR / "configs" / "reading").glob("*.yaml"))


def reading_params(name: str) -> dict:
    import yaml

    choices = yaml.safe_load((REPOSITORY_DIR / "configs" / "reading" / f"{name}.yaml").read_text())
    return {key: value for key, value in choices.items() if key != "name"}


VARIANTS = {"softmax": ("softmax", {}),
            **{f"MHA alpha=0.5, reading {name}": ("mha", {"alpha": 0.5, **reading_params(name)}) for name in READINGS},
            "MHA state only (alpha=None)": ("mha", {"alpha": None, "alpha_prime": 0.5})}  # fmt: skip


def language_inputs(tokens: int = 64, sequences: int = 4) -> torch.Tensor:
    from hopfield_attention.data import ShakespeareDataModule

    data = ShakespeareDataModule(block_size=tokens, batch_size=sequences, cache_dir=str(REPOSITORY_DIR / "data_cache"))
    data.setup("validate")
    return next(iter(data.val_dataloader()))["input_ids"], data.vocab_size  # (B, T)


def measure(model, inputs) -> list[float]:
    meter = RankCollapseMeter(samples_per_batch=0)
    RankCollapseProbe(model, attention=False).measure(inputs, meter)
    return [layer["cos_mean"] for layer in meter.compute()["layers"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPOSITORY_DIR / "results" / "uniformity_at_init.json")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    ids, vocab = language_inputs()
    images = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(len(images), dtype=torch.long)  # the probe takes (images, labels) batches; unused
    report = {"what": "mean pairwise token cosine after each block at initialization (no training)",
              "machine": platform.node(), "models": {}}  # fmt: skip
    for name, (attention, params) in VARIANTS.items():
        torch.manual_seed(0)
        lm = gpt2(vocab_size=vocab, n_layer=24, n_embd=1024, n_head=16, n_positions=64,
                  attention=_variant(attention, params))  # fmt: skip
        report["models"].setdefault("GPT-2 Medium-shaped (24 x 1024)", {})[name] = measure(
            lm.eval(), {"input_ids": ids}
        )
        del lm
        torch.manual_seed(0)
        image_model = vit(num_classes=10, image_size=224, architecture="vit_base_patch16_224", embed_dim=768, depth=24,
                          num_heads=12, attention=_variant(attention, params))  # fmt: skip
        report["models"].setdefault("ViT-Base-shaped (24 x 768)", {})[name] = measure(
            image_model.eval(), (images, labels)
        )
        del image_model
        print(name, {model: round(cos[name][-1], 3) for model, cos in report["models"].items()}, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(args.out)


def _variant(attention: str, params: dict):
    from hopfield_attention.attention import build_attention

    return build_attention(attention, **params)


if __name__ == "__main__":
    main()
