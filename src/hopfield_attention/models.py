"""Build a backbone from its config (configs/model/*.yaml), initialised from scratch, then convert its attention.

A model config names its `family` (gpt2, llama, vit) and the family's size fields; what depends on the data
(vocabulary size, context length, classes, image size) is passed by the task from the datamodule.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Callable

import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from .attention import build_attention

# Keys of a model config that describe it rather than its architecture.
DESCRIPTIVE_KEYS = ("name", "family", "skip_connections")


def gpt2(*, vocab_size: int, n_layer: int, n_embd: int, n_head: int, n_positions: int = 1024, dropout: float = 0.0):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
        # GPT-2's <|endoftext|> id (50256) exists only in its own vocabulary, not in a locally trained one
        bos_token_id=50256 if vocab_size > 50256 else None, eos_token_id=50256 if vocab_size > 50256 else None,
    )  # fmt: skip
    return GPT2LMHeadModel(config)  # transformers' own GPT-2 initialisation (normal 0.02, scaled projections)


def llama(
    *,
    vocab_size: int,
    num_hidden_layers: int,
    hidden_size: int,
    num_attention_heads: int,
    num_key_value_heads: int,
    intermediate_size: int,
    max_position_embeddings: int = 2048,
    rope_theta: float = 10000.0,
    tie_word_embeddings: bool = True,
    dropout: float = 0.0,
):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads, max_position_embeddings=max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
        tie_word_embeddings=tie_word_embeddings, attention_dropout=dropout,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def vit(
    *,
    num_classes: int,
    image_size: int,
    embed_dim: int,
    depth: int,
    num_heads: int,
    patch_size: int = 16,
    mlp_ratio: float = 4.0,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
):
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(
        img_size=image_size, patch_size=patch_size, num_classes=num_classes, embed_dim=embed_dim, depth=depth,
        num_heads=num_heads, mlp_ratio=mlp_ratio, drop_rate=drop_rate, drop_path_rate=drop_path_rate,
    )  # fmt: skip


FAMILIES: dict[str, Callable[..., nn.Module]] = {"gpt2": gpt2, "llama": llama, "vit": vit}
# What each family takes from the data rather than from its config.
DATA_DIMENSIONS = {"gpt2": ("vocab_size",), "llama": ("vocab_size",), "vit": ("num_classes", "image_size")}


def _plain(cfg: Mapping | DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def check_model_config(model_cfg: Mapping | DictConfig) -> None:
    """Fail before any data is loaded: an unknown family or a key the family does not take."""
    model = _plain(model_cfg)
    family = model.get("family")
    if family not in FAMILIES:
        raise ValueError(f"model.family must be one of {sorted(FAMILIES)}, got {family!r} (model {model.get('name')!r})")
    allowed = set(inspect.signature(FAMILIES[family]).parameters) - set(DATA_DIMENSIONS[family])
    unknown = sorted(set(model) - allowed - set(DESCRIPTIVE_KEYS))
    if unknown:
        raise ValueError(f"model {model.get('name')!r} ({family}) takes {sorted(allowed)}, got unknown keys {unknown}")


def attention_params(attention_cfg: Mapping | DictConfig) -> tuple[str, dict[str, Any]]:
    """(variant name, its parameters) of an attention config; checked by the registry (bad values raise)."""
    params = _plain(attention_cfg)
    name = params.pop("name", None)
    build_attention(name, **params)  # ValueError naming the bad name or value, before any model is built
    return name, params


def build_model(model_cfg: Mapping | DictConfig, attention_cfg: Mapping | DictConfig, **data_dims: int) -> nn.Module:
    """The backbone of `model_cfg` with `data_dims` (vocab_size, or num_classes and image_size), converted
    to the attention of `attention_cfg` by hopfield_attention.convert_model."""
    from .backbones import convert_model

    check_model_config(model_cfg)
    name, params = attention_params(attention_cfg)
    model = _plain(model_cfg)
    family = model["family"]
    missing = [dim for dim in DATA_DIMENSIONS[family] if dim not in data_dims]
    if missing:
        raise ValueError(f"a {family} model needs {missing} from the data, got {sorted(data_dims)}")
    arch = {key: value for key, value in model.items() if key not in DESCRIPTIVE_KEYS}
    backbone = FAMILIES[family](**arch, **{dim: data_dims[dim] for dim in DATA_DIMENSIONS[family]})
    return convert_model(backbone, name, skip_connections=model.get("skip_connections", True), **params)
