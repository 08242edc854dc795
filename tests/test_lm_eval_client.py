"""lm-evaluation-harness evaluates a saved MHA checkpoint through its own CLI (`lm_eval --model hf
--model_args pretrained=<dir>,trust_remote_code=True`), offline, in an interpreter that cannot import this
package, on a local rolling-loglikelihood task; its perplexities equal the project's own evaluation of the text
(LanguageModelingTask.summed_nll) where both are defined. lm-eval is in the test extra: missing, this fails."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import sysconfig
import textwrap
from types import SimpleNamespace

import lm_eval  # noqa: F401  (the test extra installs it; an ImportError here fails CI instead of skipping)
import pytest
import torch
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import GPT2LMHeadModel, LlamaForCausalLM, PreTrainedTokenizerFast

from hopfield_attention import convert_model
from hopfield_attention.backbones import BACKBONES
from hopfield_attention.tasks.language_modeling import LanguageModelingTask

WORDS = "the a cat dog sat ran on under mat hat red blue big small and then".split()
DOCS = [
    "the cat sat on the mat",
    "a big red dog ran under the blue hat and then sat",
    "the small cat ran",
    "then a dog and a cat sat on a red mat",
]  # fmt: skip  (each under 32 tokens)
TASK = """
task: mha_local_text
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
"""


def tokenizer() -> PreTrainedTokenizerFast:
    vocab = {word: i for i, word in enumerate(["<eos>", "<unk>", *WORDS])}  # < 61, the tiny models' vocabulary
    backend = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", unk_token="<unk>")


def project_nll(model, tok) -> float:
    """Summed token NLL of every document, each as one block after the end-of-text token (lm-eval's prefix)."""
    task = SimpleNamespace(model=model)  # summed_nll reads only the model
    total = 0.0
    with torch.no_grad():
        for doc in DOCS:
            ids = torch.tensor([[tok.eos_token_id, *tok(doc)["input_ids"]]])
            nll, _ = LanguageModelingTask.summed_nll(task, ids)
            total += nll.item()
    return total


@pytest.mark.slow  # lm-eval's CLI imports for about 40 s on 2 CPU cores
@pytest.mark.parametrize("model_class", [GPT2LMHeadModel, LlamaForCausalLM], ids=lambda cls: cls.__name__)
def test_lm_eval_cli_evaluates_a_saved_mha_model(model_class, tmp_path):
    torch.manual_seed(0)
    model, _ = BACKBONES[model_class].tiny(model_class)
    convert_model(model.eval(), "mha", alpha=0.5, alpha_prime=0.3)
    tok = tokenizer()
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    data = tmp_path / "text.jsonl"
    data.write_text("".join(json.dumps({"text": doc}) + "\n" for doc in DOCS))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "mha_local_text.yaml").write_text(TASK.format(data=data))

    site = sysconfig.get_paths()["purelib"]  # -S: no .pth files, so not the editable install of this package
    script = textwrap.dedent(f"""
        import sys; sys.path.append({site!r})
        import importlib.util
        assert importlib.util.find_spec("hopfield_attention") is None, "the package is importable"
        from lm_eval.__main__ import cli_evaluate
        sys.argv = ["lm_eval", "--model", "hf", "--model_args", "pretrained=model,trust_remote_code=True",
                    "--tasks", "mha_local_text", "--include_path", "tasks", "--device", "cpu",
                    "--batch_size", "1", "--output_path", "out"]
        cli_evaluate()
    """)
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_MODULES_CACHE": str(tmp_path / "modules"), "PATH": "/usr/bin:/bin"}  # fmt: skip
    run = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    (results_file,) = (tmp_path / "out").rglob("results_*.json")
    got = json.loads(results_file.read_text())["results"]["mha_local_text"]

    nll = project_nll(model, tok)
    words = sum(len(re.split(r"\s+", doc)) for doc in DOCS)
    chars = sum(len(doc.encode("utf-8")) for doc in DOCS)
    assert got["word_perplexity,none"] == pytest.approx(math.exp(nll / words), rel=1e-5)
    assert got["byte_perplexity,none"] == pytest.approx(math.exp(nll / chars), rel=1e-5)
    assert got["bits_per_byte,none"] == pytest.approx(nll / chars / math.log(2), rel=1e-5)
