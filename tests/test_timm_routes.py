"""Every route timm loads a ViT checkpoint by (issue 21, item 4) gives the converted model or refuses: a state
dict of a converted ViT records its conversion (the `hopfield_vit` key), which a stock ViT refuses and
`load_vit` / `hopfield_vit` rebuild; save_vit writes safetensors; local-dir and hf-hub (from a local Hub cache,
offline) round-trip."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import safetensors.torch
import timm
import torch

from hopfield_attention import convert_model
from hopfield_attention.backbones.vit import (
    HOPFIELD_ARCHITECTURE,
    RECORD,
    decode_record,
    load_vit,
    save_vit,
)

BASE = "vit_tiny_patch16_224"
DIMS = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4, num_classes=7)
CONVERSIONS = {
    "mha": ("mha", dict(alpha=0.5, alpha_prime=0.2)),
    "realformer": ("realformer", {}),
    "softmax-skipless": ("softmax", dict(skip_connections=False)),
}


def stock_vit(seed: int = 0):
    torch.manual_seed(seed)
    model = timm.create_model(BASE, **DIMS).eval()
    for module in model.modules():  # wide init: peaked attention, so the state changes the outputs
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.2)
    return model


def converted(name: str = "mha", seed: int = 0):
    attention, params = CONVERSIONS[name]
    return convert_model(stock_vit(seed), attention, **params).eval()


IMAGES = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))


def output(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(IMAGES)


def assert_is(loaded, model) -> None:
    """`loaded` is `model`: the same conversion, the same outputs, and not the stock model's."""
    assert loaded.hopfield_attention == model.hopfield_attention
    assert loaded.hopfield_skip_connections == model.hopfield_skip_connections
    assert torch.equal(output(loaded), output(model))
    stock = stock_vit()
    stock.load_state_dict({k: v for k, v in model.state_dict().items() if k != RECORD})
    assert not torch.allclose(output(loaded), output(stock), atol=1e-4)


def saved_state_dict(model, path):
    if path.suffix == ".safetensors":
        safetensors.torch.save_file(model.state_dict(), path)
    else:
        torch.save(model.state_dict(), path)
    return path


@pytest.fixture(params=[".pth", ".safetensors"])
def state_dict_file(request, tmp_path):
    return lambda model: saved_state_dict(model, tmp_path / f"weights{request.param}")


@pytest.mark.parametrize("name", list(CONVERSIONS))
def test_the_state_dict_records_the_conversion(name):
    model = converted(name)
    record = decode_record(model.state_dict()[RECORD])
    assert record == {
        "architecture": HOPFIELD_ARCHITECTURE,
        "base": BASE,
        "attention": model.hopfield_attention.as_dict(),
        "skip_connections": model.hopfield_skip_connections,
    }
    assert RECORD not in convert_model(stock_vit(), "softmax").state_dict()  # the stock model itself: no record


def test_create_model_with_a_checkpoint_path_refuses_the_stock_vit(state_dict_file):
    path = state_dict_file(converted())
    with pytest.raises(RuntimeError, match=f'Unexpected key.*"{RECORD}"'):
        timm.create_model(BASE, checkpoint_path=str(path), **DIMS)


def test_load_checkpoint_refuses_a_stock_vit_and_loads_a_converted_one(state_dict_file):
    model = converted()
    path = state_dict_file(model)
    with pytest.raises(RuntimeError, match=f'Unexpected key.*"{RECORD}"'):
        timm.models.load_checkpoint(stock_vit(), str(path))
    target = converted(seed=9)
    assert not torch.equal(output(target), output(model))
    timm.models.load_checkpoint(target, str(path))
    assert_is(target, model)


def test_hopfield_vit_with_a_checkpoint_path_is_the_converted_model(state_dict_file):
    model = converted("realformer")
    path = state_dict_file(model)
    loaded = timm.create_model(HOPFIELD_ARCHITECTURE, base=BASE, attention=model.hopfield_attention.as_dict(),
                               checkpoint_path=str(path), **DIMS)  # fmt: skip
    assert_is(loaded, model)


@pytest.mark.parametrize("name", list(CONVERSIONS))
def test_load_vit_rebuilds_the_recorded_model(name, state_dict_file):
    model = converted(name)
    assert_is(load_vit(state_dict_file(model), **DIMS), model)


def test_load_vit_of_a_model_built_without_timm_asks_for_the_architecture(tmp_path):
    torch.manual_seed(0)
    model = convert_model(timm.models.vision_transformer.VisionTransformer(**DIMS), "mha", alpha=0.5).eval()
    path = saved_state_dict(model, tmp_path / "weights.pth")
    assert decode_record(torch.load(path)[RECORD])["base"] is None
    with pytest.raises(ValueError, match=r"not recorded.*load_vit\(path, base="):
        load_vit(path)
    loaded = load_vit(path, base=BASE, **DIMS)
    assert torch.equal(output(loaded), output(model))


def test_load_vit_refuses_a_stock_state_dict(tmp_path):
    path = saved_state_dict(stock_vit(), tmp_path / "weights.pth")
    with pytest.raises(ValueError, match="stock ViT state dict.*convert_model"):
        load_vit(path, **DIMS)


def test_the_record_survives_a_new_head():
    """A probe or fine-tune with another head (classes) keeps the record of its pretraining: it is the conversion."""
    model = converted()
    model.reset_classifier(3)
    assert torch.equal(model.state_dict()[RECORD], converted().state_dict()[RECORD])
    again = convert_model(timm.create_model(BASE, **{**DIMS, "num_classes": 3}), "mha", alpha=0.5, alpha_prime=0.2)
    assert torch.equal(again.state_dict()[RECORD], converted().state_dict()[RECORD])


def test_a_converted_model_loads_stock_weights_and_keeps_its_own_conversion():
    """Parameter names do not change: stock weights (no record), or another conversion's, load into a converted
    model, which stays what it was converted to (the rank-collapse analysis loads a task's weights into a twin)."""
    model = converted()
    own = model.state_dict()[RECORD].clone()
    stock = stock_vit(seed=4)
    model.load_state_dict(stock.state_dict(), strict=True)
    assert torch.equal(model.patch_embed.proj.weight, stock.patch_embed.proj.weight)
    model.load_state_dict(converted("realformer", seed=5).state_dict(), strict=True)
    assert torch.equal(model.state_dict()[RECORD], own) and model.hopfield_attention.name == "mha"


def test_pretrained_cfg_file_route(state_dict_file, caplog):
    """timm loads a pretrained file strictly unless it adapts the head (the model's class count differs from the
    pretrained_cfg's): then it loads non-strictly and only logs the unexpected record (timm's choice, documented)."""
    model = converted()
    path = state_dict_file(model)
    with pytest.raises(RuntimeError, match=f'Unexpected key.*"{RECORD}"'):
        timm.create_model(BASE, pretrained=True, pretrained_cfg_overlay=dict(file=str(path), num_classes=7), **DIMS)
    timm.create_model(BASE, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **DIMS)  # 1000 -> 7
    assert f"Unexpected keys ({RECORD})" in caplog.text
    loaded = timm.create_model(HOPFIELD_ARCHITECTURE, base=BASE, attention=model.hopfield_attention.as_dict(),
                               pretrained=True, pretrained_cfg_overlay=dict(file=str(path), num_classes=7),
                               **DIMS)  # fmt: skip
    assert_is(loaded, model)


@pytest.mark.parametrize("name", list(CONVERSIONS))
def test_save_vit_writes_safetensors_that_local_dir_loads(name, tmp_path):
    model = converted(name)
    save_vit(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "config.json").read_text())["architecture"] == HOPFIELD_ARCHITECTURE
    assert_is(timm.create_model(f"local-dir:{tmp_path}", pretrained=True), model)
    with pytest.raises(RuntimeError, match=f'Unexpected key.*"{RECORD}"'):  # its weights file, as a stock file
        file = str(tmp_path / "model.safetensors")
        timm.create_model(BASE, pretrained=True, pretrained_cfg_overlay=dict(file=file, num_classes=7), **DIMS)


def test_local_dir_can_resize_as_timm_does(tmp_path):
    """The weights load through timm's load_pretrained with the ViT filter: a new image size resamples pos_embed,
    a new class count drops the head."""
    model = converted()
    save_vit(model, tmp_path)
    loaded = timm.create_model(f"local-dir:{tmp_path}", pretrained=True, img_size=24, num_classes=3).eval()
    assert loaded.pos_embed.shape[1] == 1 + 36 and loaded.get_classifier().out_features == 3
    assert torch.equal(loaded.blocks[1].attn.qkv.weight, model.blocks[1].attn.qkv.weight)
    assert loaded.hopfield_attention == model.hopfield_attention


def test_save_vit_needs_a_model_built_by_timm(tmp_path):
    model = convert_model(timm.models.vision_transformer.VisionTransformer(**DIMS), "mha")
    with pytest.raises(ValueError, match="timm.create_model"):
        save_vit(model, tmp_path)


def test_hf_hub_route_from_a_local_hub_cache(tmp_path):
    """hf-hub:<repo> as timm resolves it offline, from a Hugging Face cache laid out as a download leaves it (the
    Hub itself cannot be reached here; push_to_hf_hub uploads what save_for_hf writes)."""
    model = converted()
    save_vit(model, tmp_path / "saved")
    repo = tmp_path / "cache" / "models--someone--mha-vit"
    commit = "0" * 40
    shutil.copytree(tmp_path / "saved", repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    loaded = timm.create_model("hf-hub:someone/mha-vit", pretrained=True, cache_dir=tmp_path / "cache")
    assert_is(loaded, model)


def test_the_listed_name_alone_says_how_to_load_a_state_dict():
    with pytest.raises(ValueError, match=r"needs base=.*attention=.*local-dir:<dir>.*load_vit\(<file>\)"):
        timm.create_model(HOPFIELD_ARCHITECTURE)


def test_the_record_follows_deepcopy_and_device_moves():
    model = converted()
    twin = copy.deepcopy(model).to(torch.float64)
    assert twin.state_dict()[RECORD].dtype == torch.uint8
    assert torch.equal(twin.state_dict()[RECORD], model.state_dict()[RECORD])
    twin.load_state_dict(model.state_dict())  # the pre-hook of the copy is the copy's own
    assert torch.equal(output(twin.float()), output(model))
