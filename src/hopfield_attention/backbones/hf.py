"""How a carried-state variant enters a transformers model (shared by GPT-2 and LLaMA).

The attention function is registered with `transformers.AttentionInterface` under one name and selected
with `set_attn_implementation`. A mask builder is registered under the same name: transformers builds
masks by implementation name, and a name without one silently gets no padding mask.

The forward pass's `CarriedState` travels as the keyword `hopfield_state`: a pre-hook on the base model
adds a fresh one to each call, and transformers hands keywords down through every decoder layer to the
attention function. Activation checkpointing binds a layer's keywords into its re-run, so the backward
re-run sees the same state object as the forward did. The same hook reads the call's public
`output_attentions` (or the config's) and says so in `hopfield_output_attentions`: only then does the
attention function compute the probabilities, which transformers' output hooks collect.

A converted model records its conversion in its config (`HopfieldConfig`, a per-family subclass with its
own `model_type`, registered with the Auto classes), so save_pretrained / from_pretrained round-trip it,
and that config refuses an attention implementation that would drop the carried state.
"""

from __future__ import annotations

import copy
import os

import torch
import transformers
from torch import nn
from transformers import AttentionInterface, AutoConfig, PreTrainedConfig
from transformers.masking_utils import AttentionMaskInterface, eager_mask, sdpa_mask
from transformers.models.auto.auto_factory import _BaseAutoModelClass

from ..attention.variants import ATTENTION_VARIANTS, AttentionVariant, restore_attention
from .remote_code import write_model_code
from .state import CarriedState, StateSource

ATTN_IMPLEMENTATION = "hopfield"
STATE_KEYWORD = "hopfield_state"
MAPS_KEYWORD = "hopfield_output_attentions"

HOW_TO_LOAD = (
    "A saved MHA model loads with transformers.AutoModelForCausalLM.from_pretrained(path) (or AutoModel) "
    "after `import hopfield_attention`, or with trust_remote_code=True without it; a stock model converts "
    "with hopfield_attention.convert_model(model, 'mha', ...). attn_implementation='hopfield' on a stock "
    "class does not convert it."
)


def hopfield_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    hopfield_state: CarriedState | None = None,
    hopfield_output_attentions: bool = False,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """transformers attention function: q (B, H, Tq, D), k and v (B, H_kv, Tk, D) -> ((B, Tq, H, D),
    the probabilities (B, H, Tq, Tk) when output_attentions was asked for, else None)."""
    if hopfield_state is None:
        raise RuntimeError(
            f"the {ATTN_IMPLEMENTATION!r} attention runs only inside a model converted by hopfield_attention, "
            f"called as a whole; this {type(module).__name__} has no carried state. {HOW_TO_LOAD}"
        )
    # Grouped-query keys and values go as they are: the path repeats them where it needs to (attention/paths.py).
    output, attended = hopfield_state.attend(
        module.layer_idx, query, key, value,
        scale=query.shape[-1] ** -0.5 if scaling is None else scaling,
        attn_mask=attention_mask,
        is_causal=attention_mask is None and getattr(module, "is_causal", True),
        dropout_p=dropout,
    )  # fmt: skip
    weights = attended.probabilities() if hopfield_output_attentions else None  # (B, H, Tq, Tk)
    return output.transpose(1, 2).contiguous(), weights  # (B, Tq, H, D)


def hopfield_mask(*args, **kwargs) -> torch.Tensor | None:
    """No mask where attention is plain causal and square (or one query): the paths then use their causal flag,
    and SDPA may skip the masked half. Otherwise transformers' additive eager mask (finite where a row is all
    padding, so padded rows stay finite), never a boolean one. Not sdpa_mask's own skips for a longer (static)
    cache: those rely on SDPA's top-left causal alignment, and the paths align bottom-right (cached decoding)."""
    q_length, kv_length = kwargs.get("q_length", args[1] if len(args) > 1 else None), kwargs.get(
        "kv_length", args[2] if len(args) > 2 else None)  # fmt: skip
    skippable = kwargs.get("allow_is_causal_skip", True) and q_length in (1, kv_length)
    if skippable and sdpa_mask(*args, **kwargs) is None:
        return None
    return eager_mask(*args, **kwargs)


AttentionInterface.register(ATTN_IMPLEMENTATION, hopfield_attention_forward)
AttentionMaskInterface.register(ATTN_IMPLEMENTATION, hopfield_mask)


class AddFreshState:
    """Forward pre-hook of the base model: each call gets its own state, and says whether it wants the
    attention maps, as transformers' output capture decides it (a class, so deepcopy follows it)."""

    def __init__(self, states: StateSource):
        self.states = states

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        maps = kwargs.get("output_attentions", getattr(module.config, "output_attentions", False))
        return args, {**kwargs, STATE_KEYWORD: self.states.new_state(), MAPS_KEYWORD: bool(maps)}


class HopfieldConfig:
    """Mixed into a family's config (before it): the conversion a model carries, as config.json records it.

    `hopfield_attention` is the variant's `as_dict()` and `hopfield_skip_connections` the skip switch (both
    fields of the family's class). A variant with a carried state runs only with the "hopfield" attention
    implementation, and the config refuses being switched to another (set_attn_implementation,
    from_pretrained(attn_implementation=...)); a variant without one (softmax) keeps the stock
    implementations and may switch among them. config.json says `attn_implementation: hopfield` for every
    converted model that is not the stock model, so that a stock class loading it fails at its first
    forward with HOW_TO_LOAD instead of quietly running the stock model (this class maps it back).

    save_pretrained also writes the model code and config.json's `auto_map` (remote_code.py), so the folder
    loads with trust_remote_code=True where this package is not installed. `hopfield_heads` (Auto class name
    -> model class) is set per family by `register_auto_classes`.
    """

    hopfield_heads: dict[str, type] = {}

    @property
    def attention_variant(self) -> AttentionVariant:
        return restore_attention(self.hopfield_attention)

    def _carries_state(self) -> bool:
        recorded = self.__dict__.get("hopfield_attention")
        return recorded is not None and ATTENTION_VARIANTS[recorded["name"]].carries_state

    def _is_stock(self) -> bool:
        """softmax with skip connections (or nothing recorded): the stock model, which a stock class may load."""
        if self.__dict__.get("hopfield_attention") is None:
            return True
        variant = self.attention_variant
        return not variant.carries_state and variant.block_residual(self.hopfield_skip_connections).is_stock

    def __post_init__(self, **kwargs):
        if kwargs.get("attn_implementation") == ATTN_IMPLEMENTATION and not self._carries_state():
            kwargs["attn_implementation"] = None  # saved as "hopfield" only to stop stock classes: the default
        super().__post_init__(**kwargs)
        if self._carries_state() and self._attn_implementation is None:
            self._attn_implementation = ATTN_IMPLEMENTATION

    def __setattr__(self, key, value):
        if key == "_attn_implementation_internal" and value is not None and "hopfield_attention" in self.__dict__:
            self._check_attn_implementation(value)
        super().__setattr__(key, value)

    def _check_attn_implementation(self, value: str) -> None:
        if self._carries_state() and value != ATTN_IMPLEMENTATION:
            raise ValueError(
                f"this model runs {self.hopfield_attention} with a carried score state, which only the "
                f"{ATTN_IMPLEMENTATION!r} attention implementation computes; switching to {value!r} would "
                "silently drop the state and the alpha residual would stay. For stock attention, load the "
                "weights (parameter names are unchanged) into the stock class, or convert a stock model to "
                "another variant with hopfield_attention.convert_model"
            )
        if not self._carries_state() and value == ATTN_IMPLEMENTATION:
            raise ValueError(
                f"attention implementation {ATTN_IMPLEMENTATION!r} needs a variant with a carried state "
                f"(mha, realformer); this model runs {self.hopfield_attention}: convert a stock model with "
                "hopfield_attention.convert_model instead"
            )

    @property
    def output_attentions(self) -> bool:
        return self._output_attentions

    @output_attentions.setter
    def output_attentions(self, value: bool) -> None:
        # The stock setter allows only "eager"; "hopfield" returns the probabilities it used as well.
        if self._attn_implementation == ATTN_IMPLEMENTATION:
            self._output_attentions = value
        else:
            PreTrainedConfig.output_attentions.fset(self, value)

    def validate_output_attentions(self) -> None:
        if self._attn_implementation != ATTN_IMPLEMENTATION:
            PreTrainedConfig.validate_output_attentions(self)

    def to_dict(self) -> dict:
        output = super().to_dict()
        if not self._is_stock():
            output["attn_implementation"] = ATTN_IMPLEMENTATION
        return output

    def save_pretrained(self, save_directory, *args, **kwargs):
        # Here rather than in the model's save_pretrained: the model calls this before it uploads (push_to_hub).
        os.makedirs(save_directory, exist_ok=True)
        self.auto_map = write_model_code(type(self), type(self).hopfield_heads, save_directory)
        super().save_pretrained(save_directory, *args, **kwargs)


def own_config(model: nn.Module, config_class: type) -> PreTrainedConfig:
    """Give `model` a copy of its config as `config_class`, so that recording the conversion leaves the
    caller's config object (which other models may share) as it is; every module that held the old one
    (the model, its base model, attention modules) now holds the copy."""
    old = model.config
    new = copy.deepcopy(old)
    new.__class__ = config_class  # the same fields and values, a subclass that adds the conversion's own
    for module in model.modules():
        if module.__dict__.get("config") is old:
            module.config = new
    return new


def convert_transformers(
    model: nn.Module,
    base: nn.Module,
    blocks: nn.ModuleList,
    block_class: type[nn.Module],
    config_class: type,
    variant: AttentionVariant,
    skip_connections: bool,
) -> None:
    """Convert a transformers model in place: `base` is its decoder, `blocks` the decoder layers,
    `block_class` the subclass whose forward applies `Residual`, `config_class` the family's HopfieldConfig
    (a config of that class already, as in a HopfieldXxx model's __init__, records in place)."""
    config = model.config if isinstance(model.config, config_class) else own_config(model, config_class)
    config.hopfield_attention = variant.as_dict()
    config.hopfield_skip_connections = skip_connections
    residual = variant.block_residual(skip_connections)
    if not residual.is_stock:
        for block in blocks:
            block.__class__ = block_class
            block.hopfield_residual = residual
    if variant.carries_state:
        base.hopfield_states = StateSource(variant, root=base, blocks=blocks)
        base.register_forward_pre_hook(AddFreshState(base.hopfield_states), with_kwargs=True)
        model.set_attn_implementation(ATTN_IMPLEMENTATION)
    if type(model) in HOPFIELD_CLASSES:  # so that config.json's `architectures` names the class that loads it
        model.__class__ = HOPFIELD_CLASSES[type(model)]


def convert_from_config(model: nn.Module) -> None:
    """__init__ of a HopfieldXxx model class: convert the freshly built stock model as its config records."""
    from .convert import (
        convert_model,  # convert imports the families, which import this module
    )

    convert_model(model, model.config.attention_variant, skip_connections=model.config.hopfield_skip_connections)


# stock model class -> the class a converted one becomes, and a saved one loads as (hopfield_model_class)
HOPFIELD_CLASSES: dict[type, type] = {}


class HopfieldModel:
    """Mixed into a stock model class (before it): built from a HopfieldConfig, the model is converted as the
    config records; the class a converted model of that stock class becomes."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        convert_from_config(self)


def hopfield_model_class(stock: type, config_class: type, module: str) -> type:
    """`Hopfield<stock>`: the stock class with HopfieldModel mixed in, defined in `module` (the family's, so
    that save_pretrained ships that module's code)."""
    name = f"Hopfield{stock.__name__}"
    doc = f"What the Auto classes build for a saved converted {stock.__name__}: the stock model, converted."
    cls = type(name, (HopfieldModel, stock), {"config_class": config_class, "__module__": module, "__doc__": doc})
    HOPFIELD_CLASSES[stock] = cls
    return cls


def auto_heads(stock_config: type) -> dict[str, type]:
    """Each Auto model class transformers offers for `stock_config` (its name -> the stock class it builds),
    read from transformers' own mappings."""
    heads = {}
    for name in sorted(dir(transformers)):
        if not name.startswith("AutoModel"):
            continue
        auto = getattr(transformers, name)
        if isinstance(auto, type) and issubclass(auto, _BaseAutoModelClass) and getattr(auto, "_model_mapping", None):
            try:
                heads[name] = auto._model_mapping[stock_config]
            except KeyError:
                continue
    return heads


def refusing_class(auto_name: str, stock: type, config_class: type, supported: dict[str, type]) -> type:
    """A class the Auto class `auto_name` may build for `config_class` that refuses with what is supported."""
    message = (
        f"{auto_name} ({stock.__name__}) is not supported for a {config_class.model_type} checkpoint; supported: "
        + ", ".join(f"{auto} ({cls.__name__})" for auto, cls in sorted(supported.items()))
    )

    def __init__(self, config, *args, **kwargs):
        raise ValueError(message)

    return type(f"Unsupported{stock.__name__}", (stock,), {"config_class": config_class, "__init__": __init__})


def register_auto_classes(config_class: type, stock_config: type) -> None:
    """After `import hopfield_attention`, every Auto class transformers offers for `stock_config` builds a saved
    converted model of this family as the Hopfield class of its stock head, or refuses where there is none."""
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    heads = auto_heads(stock_config)
    supported = {auto: HOPFIELD_CLASSES[stock] for auto, stock in heads.items() if stock in HOPFIELD_CLASSES}
    config_class.hopfield_heads = supported
    for auto, stock in heads.items():
        model = supported.get(auto) or refusing_class(auto, stock, config_class, supported)
        getattr(transformers, auto).register(config_class, model, exist_ok=True)
