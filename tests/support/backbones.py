"""Tiny random-init backbones and a plain-tensor transcription of the equations, for the backbone tests.

The transcription is written out here on purpose, apart from the package: per layer, explicit q k^T,
the score state update, a masked softmax, and the residuals with alpha; it reuses the stock modules only
for what MHA does not change (embeddings, norms, MLPs, heads) and the stock weights for q, k, v, out.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import timm
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from hopfield_attention import build_attention

VOCAB = 61


def tiny_gpt2(seed: int = 0, **overrides) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = dict(
        n_layer=3,
        n_embd=32,
        n_head=4,
        vocab_size=VOCAB,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        initializer_range=0.2,
    )  # fmt: skip  (wide init: peaked attention, so the state matters)
    return GPT2LMHeadModel(GPT2Config(**{**config, **overrides})).eval()


def tiny_llama(seed: int = 0, **overrides) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = dict(
        num_hidden_layers=3,
        hidden_size=32,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        vocab_size=VOCAB,
        max_position_embeddings=64,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        initializer_range=0.2,
    )  # fmt: skip  (2 kv heads: GQA)
    return LlamaForCausalLM(LlamaConfig(**{**config, **overrides})).eval()


def tiny_vit(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    config = dict(
        img_size=16, patch_size=4, embed_dim=32, depth=3, num_heads=4, num_classes=7, qkv_bias=True, init_values=0.5
    )  # fmt: skip  (init_values: LayerScale in the path)
    model = timm.models.vision_transformer.VisionTransformer(**{**config, **overrides}).eval()
    for module in model.modules():  # wide init, as for the language models: peaked attention
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.2)
    return model


BUILDERS = {"gpt2": tiny_gpt2, "llama": tiny_llama, "vit": tiny_vit}


def example_input(family: str, batch: int = 2, length: int = 9, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if family == "vit":
        return torch.randn(batch, 3, 16, 16, generator=gen)
    return torch.randint(1, VOCAB, (batch, length), generator=gen)


def assert_cached_generation_equals_uncached(model, prompts: torch.Tensor, mask: torch.Tensor, new_tokens: int) -> None:
    """Greedy generation with and without the KV cache: the same tokens, the same scores at every step."""
    runs = {
        use_cache: model.generate(
            prompts,
            attention_mask=mask,
            max_new_tokens=new_tokens,
            do_sample=False,
            use_cache=use_cache,
            output_scores=True,
            return_dict_in_generate=True,
            pad_token_id=0,
            eos_token_id=None,
        )  # fmt: skip
        for use_cache in (True, False)
    }
    assert torch.equal(runs[True].sequences, runs[False].sequences)
    for cached, uncached in zip(runs[True].scores, runs[False].scores):
        torch.testing.assert_close(cached, uncached, rtol=1e-4, atol=1e-4)


def logits(model, inputs, **kwargs) -> torch.Tensor:
    out = model(inputs, **kwargs)
    return out if isinstance(out, torch.Tensor) else out.logits


def stock_and_converted(family: str, attention: str, **params):
    stock = BUILDERS[family]()
    from hopfield_attention import convert_model

    return stock, convert_model(copy.deepcopy(stock), attention, **params)


def alpha_weights(alpha: float, placement: str) -> tuple[float, float]:
    """(stream, branch) weights alpha gives the sub-blocks it acts on: alpha and 1 - alpha, or for "stream" the
    same divided by the larger of the two (alpha = 0.5 is x + a, alpha = 1 is x alone, alpha = 0 is a alone)."""
    if placement == "stream":
        larger = max(alpha, 1 - alpha)
        return alpha / larger, (1 - alpha) / larger
    return alpha, 1 - alpha


@dataclass(frozen=True)
class Rule:
    """The equations of one variant and reading: H_n = decay H_{n-1} + gain S_n (H_1 per first_layer); each
    sub-block's output is x + branch, or alpha-weighted where the placement puts alpha ("attention": the
    attention sub-block, "both": both, "stream": the attention sub-block without shrinking x). Without skips the
    branch alone, or (skipless "own") the alpha-weighted sub-blocks keep their weights."""

    decay: float
    gain: float
    alpha: float | None
    first_layer: str = "scores"
    skip: bool = True
    placement: str = "attention"
    skipless: str = "none"

    def state(self, previous: torch.Tensor | None, scores: torch.Tensor) -> torch.Tensor:
        if previous is None:
            return scores if self.first_layer == "scores" else self.gain * scores
        return self.decay * previous + self.gain * scores

    def sub_block(self, x: torch.Tensor, branch: torch.Tensor, weighted: bool) -> torch.Tensor:
        weighted = weighted and self.alpha is not None
        if not self.skip and not (weighted and self.skipless == "own"):
            return branch
        if not weighted:
            return x + branch
        stream, gain = alpha_weights(self.alpha, self.placement)
        return stream * x + gain * branch

    def attention_residual(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.sub_block(x, a, weighted=True)

    def mlp_residual(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return self.sub_block(x, m, weighted=self.placement == "both")


# convert_model(model, "mha", ...) without the open choices computes the default reading
DEFAULT_MHA = build_attention("mha")


def mha_rule(alpha, alpha_prime, first_layer=None, skip=True, placement=None, skipless=None) -> Rule:
    """The rule of MHA with the given choices, the default reading's where none is given."""
    first_layer = DEFAULT_MHA.first_layer if first_layer is None else first_layer
    placement = DEFAULT_MHA.residual if placement is None else placement
    skipless = DEFAULT_MHA.skipless_residual if skipless is None else skipless
    return Rule(alpha_prime, 1 - alpha_prime, alpha, first_layer, skip, placement, skipless)


REALFORMER = Rule(1.0, 1.0, None)

# (attention name, convert_model params, Rule): the settings every end-to-end check runs
SETTINGS = {
    "mha-0.5": ("mha", dict(alpha=0.5, alpha_prime=0.5), mha_rule(0.5, 0.5)),
    "mha-0.7-0.2-zeros": (
        "mha",
        dict(alpha=0.7, alpha_prime=0.2, first_layer="zeros"),
        mha_rule(0.7, 0.2, "zeros"),
    ),
    "mha-both-0.6": ("mha", dict(alpha=0.6, alpha_prime=0.5, residual="both"), mha_rule(0.6, 0.5, placement="both")),
    "mha-stream-0.7": (
        "mha",
        dict(alpha=0.7, alpha_prime=0.5, residual="stream"),
        mha_rule(0.7, 0.5, placement="stream"),
    ),
    "mha-stream-0.3-zeros": (
        "mha",
        dict(alpha=0.3, alpha_prime=0.6, residual="stream", first_layer="zeros"),
        mha_rule(0.3, 0.6, "zeros", placement="stream"),
    ),
    "realformer": ("realformer", {}, REALFORMER),
}
# The readings of configs/reading/ as convert_model parameters (alpha = alpha' = 0.5, the paper's setting)
READINGS = {
    "pinned": dict(residual="attention", first_layer="scores", skipless_residual="none"),
    "update": dict(residual="both", first_layer="scores", skipless_residual="own"),
    "stream": dict(residual="stream", first_layer="scores", skipless_residual="own"),
    "zeros": dict(residual="attention", first_layer="zeros", skipless_residual="none"),
}


def reading_rule(reading: dict, alpha: float, alpha_prime: float, skip: bool = True) -> Rule:
    return mha_rule(alpha, alpha_prime, reading["first_layer"], skip, reading["residual"], reading["skipless_residual"])


def heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    b, t, c = x.shape
    return x.view(b, t, n_heads, c // n_heads).transpose(1, 2)  # (B, nh, T, hd)


def attend(rule: Rule, previous, q, k, v, keep):
    """One layer by hand: q (B, nh, T, hd), k and v (B, nh, T, hd), keep (T, T) or (B, 1, T, T) bool."""
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])  # (B, nh, T, T)
    state = rule.state(previous, scores)
    probs = torch.softmax(state.masked_fill(~keep, float("-inf")), dim=-1)
    out = probs @ v  # (B, nh, T, hd)
    return out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1), state  # (B, T, C)


def gpt2_reference(stock: GPT2LMHeadModel, ids: torch.Tensor, rule: Rule) -> torch.Tensor:
    tr, t = stock.transformer, ids.shape[1]
    keep = torch.ones(t, t, dtype=torch.bool).tril()
    x = tr.wte(ids) + tr.wpe(torch.arange(t))
    state = None
    for block in tr.h:
        h = block.ln_1(x)
        qkv = h @ block.attn.c_attn.weight + block.attn.c_attn.bias  # Conv1D: x W + b
        q, k, v = (heads(z, tr.config.n_head) for z in qkv.split(tr.config.n_embd, dim=-1))
        a, state = attend(rule, state, q, k, v, keep)
        a = a @ block.attn.c_proj.weight + block.attn.c_proj.bias
        x = rule.attention_residual(x, a)
        x = rule.mlp_residual(x, block.mlp(block.ln_2(x)))
    return stock.lm_head(tr.ln_f(x))


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def llama_reference(stock: LlamaForCausalLM, ids: torch.Tensor, rule: Rule) -> torch.Tensor:
    base, t, cfg = stock.model, ids.shape[1], stock.config
    keep = torch.ones(t, t, dtype=torch.bool).tril()
    x = base.embed_tokens(ids)
    cos, sin = base.rotary_emb(x, torch.arange(t)[None])  # (1, T, hd) each
    cos, sin = cos[:, None], sin[:, None]
    groups = cfg.num_attention_heads // cfg.num_key_value_heads
    state = None
    for block in base.layers:
        att = block.self_attn
        h = block.input_layernorm(x)
        q = heads(h @ att.q_proj.weight.T, cfg.num_attention_heads)
        k = heads(h @ att.k_proj.weight.T, cfg.num_key_value_heads)
        v = heads(h @ att.v_proj.weight.T, cfg.num_key_value_heads)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)  # state on query heads
        a, state = attend(rule, state, q, k, v, keep)
        x = rule.attention_residual(x, a @ att.o_proj.weight.T)
        x = rule.mlp_residual(x, block.mlp(block.post_attention_layernorm(x)))
    return stock.lm_head(base.norm(x))


def vit_reference(stock, images: torch.Tensor, rule: Rule) -> torch.Tensor:
    x = stock.norm_pre(stock.patch_drop(stock._pos_embed(stock.patch_embed(images))))
    keep = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool)
    state = None
    for block in stock.blocks:
        att = block.attn
        qkv = block.norm1(x) @ att.qkv.weight.T + att.qkv.bias
        q, k, v = (heads(z, att.num_heads) for z in qkv.chunk(3, dim=-1))
        a, state = attend(rule, state, q, k, v, keep)
        a = a @ att.proj.weight.T + att.proj.bias
        x = rule.attention_residual(x, block.ls1(a))
        x = rule.mlp_residual(x, block.ls2(block.mlp(block.norm2(x))))
    return stock.forward_head(stock.norm(x))


REFERENCES = {"gpt2": gpt2_reference, "llama": llama_reference, "vit": vit_reference}


def auto_heads(stock_config: type) -> dict[type, type]:
    """Every Auto model class transformers offers for `stock_config` -> the stock class it builds, read from
    transformers' own registries (each Auto class's mapping), so that a head transformers adds is tested too."""
    from transformers.models.auto import modeling_auto
    from transformers.models.auto.auto_factory import _BaseAutoModelClass

    heads = {}
    for auto in vars(modeling_auto).values():
        if isinstance(auto, type) and issubclass(auto, _BaseAutoModelClass) and getattr(auto, "_model_mapping", None):
            try:
                heads[auto] = auto._model_mapping[stock_config]
            except KeyError:
                continue
    return heads
