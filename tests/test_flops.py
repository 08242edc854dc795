"""FLOPs per sample (tasks/flops.py) against torch's FlopCounterMode, which counts the matmuls and attention
kernels that actually run, forward and backward, on tiny models of every backbone and implementation.

The analytic count must equal the measured one exactly, with one adjustment to the measurement: torch's formula
for an attention kernel's backward includes the q k^T the flash and memory-efficient kernels recompute, which
model FLOPs (MFU) leave out, so the counter here uses torch's formula less that product. Everything else torch
does not count (elementwise work: norms, softmax, the state's moving average, the mask) the analytic count leaves
out as well; the CPU flash kernel, which torch does not count either, tasks/flops.py registers with torch's own
formula.
"""

from __future__ import annotations

import pytest
import torch
from lightning.pytorch.utilities.model_summary import ModelSummary
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode, bmm_flop, sdpa_backward_flop_count

from hopfield_attention.backbones.build import build_model
from hopfield_attention.config.locations import CONFIG_DIR
from hopfield_attention.tasks import LanguageModelingTask
from hopfield_attention.tasks.flops import (
    attention_flops,
    attention_layout,
    causal_lm_flops_per_sequence,
    matmul_parameters,
    vit_flops_per_image,
)

from support.train import CPU, compose_run

aten = torch.ops.aten
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
MODELS = {"gpt2": "gpt2_tiny", "llama": "llama_tiny", "vit": "vit_tiny_test"}
ATTENTIONS = {
    "softmax": {"name": "softmax"},
    "explicit": {"name": "mha", "implementation": "explicit"},
    "fused": {"name": "mha", "implementation": "fused"},
    "stacked": {"name": "mha", "implementation": "stacked"},
    "realformer-fused": {"name": "realformer", "implementation": "fused"},
    "realformer-stacked": {"name": "realformer", "implementation": "stacked"},
    # alpha' = 0: the state is decayed to nothing, so no layer reads the one below (fused) or stacks it (stacked)
    "fused-no-memory": {"name": "mha", "implementation": "fused", "alpha_prime": 0.0},
    "stacked-no-memory": {"name": "mha", "implementation": "stacked", "alpha_prime": 0.0},
}
TOKENS = 16


def _backward_without_recompute(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    b, heads, queries, width = query
    return sdpa_backward_flop_count(grad_out, query, key, value) - bmm_flop(
        (b * heads, queries, width), (b * heads, width, key[2])
    )


MODEL_FLOPS = {
    op: _backward_without_recompute
    for op in (aten._scaled_dot_product_flash_attention_for_cpu_backward, aten._scaled_dot_product_flash_attention_backward,
               aten._scaled_dot_product_efficient_attention_backward, aten._scaled_dot_product_cudnn_attention_backward)
}  # fmt: skip


def build(family: str, attention: dict, device: str = "cpu", **model):
    torch.manual_seed(0)
    cfg = OmegaConf.merge(OmegaConf.load(CONFIG_DIR / "model" / f"{MODELS[family]}.yaml"), model)
    if family == "vit":
        return build_model(cfg, attention, num_classes=10, image_size=32).to(device)
    return build_model(cfg, attention, vocab_size=64).to(device)


def example(family: str, batch: int, device: str, tokens: int = TOKENS) -> torch.Tensor:
    if family == "vit":
        return torch.randn(batch, 3, 32, 32, device=device)
    return torch.randint(0, 64, (batch, tokens), device=device)


def measured(model, inputs: torch.Tensor, *, backward: bool = True) -> int:
    """FLOPs of the model's forward (and backward) on `inputs`, as FlopCounterMode counts what runs."""
    with FlopCounterMode(display=False, custom_mapping=MODEL_FLOPS) as counter:
        out = model(inputs) if inputs.is_floating_point() else model(input_ids=inputs).logits
        if backward:
            out.float().sum().backward()
    return counter.get_total_flops()


def analytic(family: str, model, batch: int, tokens: int = TOKENS) -> int:
    if family == "vit":
        return vit_flops_per_image(model, batch=batch)
    return causal_lm_flops_per_sequence(model, tokens, batch=batch)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("family", MODELS)
def test_training_flops_equal_what_runs(family, attention, device):
    model = build(family, ATTENTIONS[attention], device).train()
    batch = 2
    assert measured(model, example(family, batch, device)) == batch * analytic(family, model, batch)


@pytest.mark.parametrize("family", MODELS)
def test_the_variants_own_work_is_counted(family):
    """The fused path's extra q k^T and the stacked path's wider q k^T show in the count; explicit does the stock
    model's matmuls."""
    counts = {
        name: analytic(family, build(family, ATTENTIONS[name]), 1)
        for name in ("softmax", "explicit", "fused", "stacked")
    }
    assert counts["explicit"] == counts["softmax"] < counts["fused"]
    assert counts["softmax"] < counts["stacked"]
    # two layers of head width D: the stacked one q k^T at D, then at 2 D with v padded to 2 D on the CPU
    layout = attention_layout(build(family, ATTENTIONS["stacked"]))
    tokens = TOKENS if family != "vit" else 65
    unit = 2 * layout.heads * tokens**2 * layout.head_dim
    assert counts["stacked"] - counts["softmax"] == 6 * unit  # (6 + 12) - (6 + 6) units


@pytest.mark.parametrize("attention", ["fused", "stacked"])
def test_training_flops_with_attention_dropout(attention):
    # dropout on the CPU: the fused layers leave their one-node backward, the stacked path pads no v
    model = build("gpt2", ATTENTIONS[attention], dropout=0.1).train()
    assert attention_layout(model).dropout == 0.1
    assert measured(model, example("gpt2", 2, "cpu")) == 2 * analytic("gpt2", model, 2)


def test_auto_counts_the_layers_it_stacks_and_the_switch_to_dense():
    # CPU, 512 keys, head width 64: layers 1 and 2 stack (widths 64, 128), layer 3 would be 192 wide and goes
    # dense (StackedScores.dense() at width 128, then fused), layer 4 stays fused
    shape = dict(n_layer=4, n_embd=64, n_head=1, n_positions=512)
    model = build("gpt2", {"name": "mha", "implementation": "auto"}, **shape).train()
    tokens = 512
    count = analytic("gpt2", model, 1, tokens)
    assert measured(model, example("gpt2", 1, "cpu", tokens)) == count
    others = {impl: analytic("gpt2", build("gpt2", {"name": "mha", "implementation": impl}, **shape), 1, tokens)
              for impl in ("explicit", "fused", "stacked")}  # fmt: skip
    unit = 2 * tokens**2 * 64  # one T x T product of width D
    weights = others["explicit"] - 4 * 6 * unit  # the weights' matmuls, the same in every count
    assert count - weights == (6 + 12 + 6 + 7 + 7) * unit  # stacked, stacked at 2D, dense(), fused, fused
    assert count not in others.values()


def test_a_frozen_backbone_counts_forward_only():
    # a linear probe: the backbone in eval mode without gradients, the head trained
    model = build("vit", ATTENTIONS["fused"]).eval().requires_grad_(False)
    model.get_classifier().requires_grad_(True)
    assert measured(model, example("vit", 2, "cpu")) == 2 * vit_flops_per_image(model, backbone_trains=False, batch=2)


@pytest.mark.parametrize("attention", ["softmax", "fused", "stacked"])
def test_the_model_summary_shows_the_forward_count(attention):
    """Lightning's model summary counts FLOPs with FlopCounterMode over the task's example_input_array, one
    sequence forward without gradients: the analytic forward count of one sample (it printed 0 without one)."""
    experiment = "t1_gpt2_small_wikitext103_" + ("softmax" if attention == "softmax" else "mha_a0.5")
    overrides = [] if attention == "softmax" else [f"attention.implementation={attention}"]
    cfg = compose_run(experiment, ["model=gpt2_tiny", "data.block_size=32", *CPU, *overrides], "/tmp/unused")
    task = LanguageModelingTask(cfg, vocab_size=64)
    tokens = int(cfg.data.block_size)
    assert tuple(task.example_input_array.shape) == (1, tokens)
    summary = ModelSummary(task, max_depth=1)
    expected = 2 * matmul_parameters(task.model) * tokens + attention_flops(
        attention_layout(task.model), tokens, train=False
    )
    assert summary.total_flops == expected > 0


def test_weights_counted_once_without_lookups():
    model = build("gpt2", ATTENTIONS["softmax"])
    matrices = sum(
        p.numel() for name, p in model.named_parameters() if p.ndim == 2 and name != "transformer.wpe.weight"
    )
    assert matmul_parameters(model) == matrices  # the tied head once, position embeddings not
