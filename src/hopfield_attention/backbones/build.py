"""Backbones from their configs (configs/model/*.yaml), initialised from scratch and converted.

A model config names its factory as `_target_` (one of the functions below, `_partial_: true`) and the
family's size fields; the task calls it with the attention variant (built once, from `cfg.attention`) and
what the data decides (vocabulary size, or classes and image size):

    build_model(cfg.model, variant, vocab_size=...)   # = instantiate(cfg.model)(attention=variant, vocab_size=...)
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch.nn as nn
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from ..attention.variants import AttentionVariant, build_attention
from .convert import convert_model

# What every factory takes besides the architecture, filled in by the task rather than by the config.
CALL_KEYS = ("attention",)
DATA_DIMENSIONS = ("vocab_size", "num_classes", "image_size")


def gpt2(
    *,
    vocab_size: int,
    n_layer: int,
    n_embd: int,
    n_head: int,
    n_positions: int = 1024,
    dropout: float = 0.0,
    attention: AttentionVariant | str = "softmax",
    skip_connections: bool = True,
    name: str | None = None,
) -> nn.Module:
    """transformers GPT2LMHeadModel, its own initialisation (normal 0.02, scaled projections), converted.
    `name` labels the config (configs/model/<name>.yaml); it does not enter the architecture."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
        # GPT-2's <|endoftext|> id (50256) exists only in its own vocabulary, not in a locally trained one
        bos_token_id=50256 if vocab_size > 50256 else None, eos_token_id=50256 if vocab_size > 50256 else None,
    )  # fmt: skip
    return convert_model(GPT2LMHeadModel(config), attention, skip_connections=skip_connections)


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
    attention: AttentionVariant | str = "softmax",
    skip_connections: bool = True,
    name: str | None = None,
) -> nn.Module:
    """transformers LlamaForCausalLM from scratch, converted. `name` labels the config."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads, max_position_embeddings=max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
        tie_word_embeddings=tie_word_embeddings, attention_dropout=dropout,
    )  # fmt: skip
    return convert_model(LlamaForCausalLM(config), attention, skip_connections=skip_connections)


def vit(
    *,
    num_classes: int,
    image_size: int,
    architecture: str,
    embed_dim: int,
    depth: int,
    num_heads: int,
    patch_size: int = 16,
    mlp_ratio: float = 4.0,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
    attention: AttentionVariant | str = "softmax",
    skip_connections: bool = True,
    name: str | None = None,
) -> nn.Module:
    """timm VisionTransformer from scratch through timm.create_model(architecture, ...) with every size
    given, so that timm's save route (save_for_hf / push_to_hf_hub) can publish it; converted. `name`
    labels the config."""
    import timm

    model = timm.create_model(
        architecture, pretrained=False, img_size=image_size, patch_size=patch_size, num_classes=num_classes,
        embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
    )  # fmt: skip
    return convert_model(model, attention, skip_connections=skip_connections)


def plain(cfg: Mapping | DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def attention_variant(attention: AttentionVariant | Mapping | DictConfig) -> AttentionVariant:
    """The variant itself, or the one an attention config (`name` and parameters) describes."""
    return attention if isinstance(attention, AttentionVariant) else build_attention(**plain(attention))


def check_model_config(model_cfg: Mapping | DictConfig) -> None:
    """Fail before any data is loaded: no or an unknown `_target_`, or a key its factory does not take."""
    model = plain(model_cfg)
    target = model.get("_target_")
    if not target:
        raise ValueError(
            f"model {model.get('name')!r} needs a `_target_`, e.g. hopfield_attention.backbones.build.gpt2 "
            f"(configs/model/*.yaml); got keys {sorted(model)}"
        )
    try:
        factory = get_method(target)
    except Exception as error:  # Hydra wraps what the import raised
        raise ValueError(f"model._target_ {target!r} cannot be imported: {error}") from None
    allowed = set(inspect.signature(factory).parameters) - set(CALL_KEYS) - set(DATA_DIMENSIONS)
    unknown = sorted(key for key in model if not key.startswith("_") and key not in allowed)
    if unknown:
        raise ValueError(f"model {model.get('name')!r} ({target}) takes {sorted(allowed)}, got unknown keys {unknown}")


def build_model(
    model_cfg: Mapping | DictConfig, attention: AttentionVariant | Mapping | DictConfig, **data_dims: int
) -> nn.Module:
    """The backbone of `model_cfg` with `data_dims` (vocab_size, or num_classes and image_size), converted to
    `attention` (a variant, or an attention config)."""
    check_model_config(model_cfg)
    factory = instantiate(plain(model_cfg), _partial_=True)
    return factory(attention=attention_variant(attention), **data_dims)
