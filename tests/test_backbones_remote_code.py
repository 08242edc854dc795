"""A saved converted GPT-2 / LLaMA carries its code: with only torch and transformers (the package not importable),
`AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)` is the converted model, logits and cached
generation identical; the shipped code is the package's own modules, only their relative imports flattened."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2LMHeadModel, LlamaForCausalLM

from hopfield_attention import convert_model
from hopfield_attention.backbones import BACKBONES
from hopfield_attention.backbones.remote_code import RELATIVE_FROM, model_code

FAMILIES = {"gpt2": GPT2LMHeadModel, "llama": LlamaForCausalLM}
NEW_TOKENS = 4


def saved(model_class, directory: Path):
    torch.manual_seed(0)
    model, inputs = BACKBONES[model_class].tiny(model_class)
    convert_model(model.eval(), "mha", alpha=0.5, alpha_prime=0.3)
    model.save_pretrained(directory)
    return model, inputs["input_ids"]


def without_the_package(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `script` in a Python that has the venv's site-packages but not the package: -S skips the .pth files,
    among them the editable install's finder, and the working directory is not the repository."""
    site = sysconfig.get_paths()["purelib"]
    prelude = f"import sys; sys.path.append({site!r})\n"
    env = {"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(cwd / "modules"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-S", "-c", prelude + textwrap.dedent(script)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_trust_remote_code_loads_the_converted_model_without_the_package(tmp_path):
    want = {}
    for family, model_class in FAMILIES.items():
        model, ids = saved(model_class, tmp_path / family)
        config = json.loads((tmp_path / family / "config.json").read_text())
        assert config["architectures"] == [type(model).__name__] == [f"Hopfield{model_class.__name__}"]
        assert config["auto_map"]["AutoModelForCausalLM"].endswith(f".Hopfield{model_class.__name__}")
        with torch.no_grad():
            want[family] = (model(ids).logits, model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False,
                                                              use_cache=True, pad_token_id=0), ids)  # fmt: skip
    torch.save({family: ids for family, (_, _, ids) in want.items()}, tmp_path / "ids.pt")
    run = without_the_package(f"""
        import importlib.util
        assert importlib.util.find_spec("hopfield_attention") is None, "the package is importable"
        import torch
        from transformers import AutoModelForCausalLM
        got = {{}}
        for family, ids in torch.load("ids.pt").items():
            model = AutoModelForCausalLM.from_pretrained(family, trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules."), type(model).__module__
            with torch.no_grad():
                got[family] = (type(model).__name__, model.config._attn_implementation, model(ids).logits,
                               model.generate(ids, max_new_tokens={NEW_TOKENS}, do_sample=False, use_cache=True,
                                              pad_token_id=0))
        torch.save(got, "got.pt")
    """, tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    got = torch.load(tmp_path / "got.pt")
    for family, (logits, generated, _) in want.items():
        name, attn, remote_logits, remote_generated = got[family]
        assert name == f"Hopfield{FAMILIES[family].__name__}" and attn == "hopfield"
        assert torch.equal(remote_logits, logits)
        assert torch.equal(remote_generated, generated) and generated.shape[1] == 7 + NEW_TOKENS


def test_without_the_package_and_without_trust_remote_code_transformers_refuses(tmp_path):
    saved(GPT2LMHeadModel, tmp_path / "gpt2")
    run = without_the_package("from transformers import AutoModelForCausalLM\n"
                              "AutoModelForCausalLM.from_pretrained('gpt2')", tmp_path)  # fmt: skip
    assert run.returncode != 0 and "trust_remote_code=True" in run.stderr


def test_with_the_package_loading_needs_no_remote_code(tmp_path):
    model, ids = saved(LlamaForCausalLM, tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()  # no trust_remote_code: the package's classes
    assert type(loaded) is type(model) and type(loaded).__module__ == "hopfield_attention.backbones.llama"
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_the_shipped_code_is_the_packages_own_source(tmp_path):
    """One source of truth: each shipped file is its package module line for line, but for relative imports."""
    saved(GPT2LMHeadModel, tmp_path)
    shipped = {path.stem for path in tmp_path.glob("*.py")}
    assert {"gpt2", "hf", "variants", "state", "convert"} <= shipped and "vit" not in shipped  # no timm needed
    modules = {name.rsplit(".", 1)[-1]: name for name in sys.modules if name.startswith("hopfield_attention.")}
    for stem in shipped:
        original = Path(sys.modules[modules[stem]].__file__).read_text().splitlines()
        copy = (tmp_path / f"{stem}.py").read_text().splitlines()
        assert len(copy) == len(original)
        for old, new in zip(original, copy):
            if new != old:  # only the module named by a relative import differs
                assert RELATIVE_FROM.search(old), (stem, old, new)
                assert RELATIVE_FROM.sub("IMPORT", old) == RELATIVE_FROM.sub("IMPORT", new), (stem, old, new)
            assert not new.lstrip().startswith("from ..")


def test_two_modules_that_would_ship_under_one_name_are_refused(tmp_path):
    (tmp_path / "pkg" / "a").mkdir(parents=True)
    (tmp_path / "pkg" / "b").mkdir()
    for init in ("pkg", "pkg/a", "pkg/b"):
        (tmp_path / init / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a" / "util.py").write_text("from ..b.util import x\n")
    (tmp_path / "pkg" / "b" / "util.py").write_text("x = 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ValueError, match=r"pkg\.b\.util and pkg\.a\.util would both ship as util\.py"):
            model_code("pkg.a.util")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == "pkg" or n.startswith("pkg.")]:
            del sys.modules[name]
