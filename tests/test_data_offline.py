"""A dataset missing while offline fails at once, with one message that says how to supply it."""

import os
import subprocess
import sys
import textwrap
import time

import pytest
from hydra.utils import instantiate

from hopfield_attention.data import DatasetUnavailableError
from hopfield_attention.data.hub import hub_reachable

from support.data import data_config


@pytest.mark.parametrize(
    ("name", "hub_name", "hook"),
    [("wikitext103", "Salesforce/wikitext", "prepare_data"), ("cifar100", "uoft-cs/cifar100", "setup")],
)
def test_missing_hub_dataset_offline_fails_at_once_with_instructions(tmp_path, name, hub_name, hook):
    overrides = {"hf_cache_dir": str(tmp_path / "empty_hf_cache")}
    if name == "wikitext103":
        overrides["tokenizer"] = str(_tiny_tokenizer(tmp_path))
    datamodule = instantiate(data_config(name, overrides, tmp_path / "cache"))
    start = time.monotonic()
    with pytest.raises(DatasetUnavailableError) as caught:
        getattr(datamodule, hook)()
    assert time.monotonic() - start < 10  # no retry loop
    message = str(caught.value)
    assert repr(name) in message and repr(hub_name) in message
    assert "data.local_path=" in message and "datasets.load_dataset(" in message and "offline mode" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # raise ... from None
    assert isinstance(caught.value, RuntimeError)


def test_missing_tokenizer_offline_names_the_override(tmp_path):
    from hopfield_attention.data.tokenizer import load_tokenizer

    try:
        load_tokenizer("gpt2")
    except DatasetUnavailableError as error:
        assert "data.tokenizer=<dir>" in str(error) and error.__cause__ is None
    else:
        pytest.skip("GPT-2's tokenizer is in this machine's Hugging Face cache")


def test_no_network_without_offline_variables_fails_in_seconds_not_retries(tmp_path):
    if hub_reachable():
        pytest.skip("the Hub is reachable here: this checks the no-network path")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env["HF_HOME"] = str(tmp_path / "hf_home")
    script = textwrap.dedent(
        """
        import time
        from hopfield_attention.data.sources import DatasetSource
        from hopfield_attention.data import DatasetUnavailableError
        start = time.monotonic()
        try:
            DatasetSource("wikitext103", "Salesforce/wikitext", "wikitext-103-raw-v1").load()
        except DatasetUnavailableError as error:
            print("UNAVAILABLE", error)
        print("SECONDS", time.monotonic() - start)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert "UNAVAILABLE" in result.stdout and "cannot be reached" in result.stdout, result.stderr[-2000:]
    seconds = float(result.stdout.split("SECONDS")[-1])
    assert seconds < 8, f"took {seconds:.1f} s: the libraries' ~24 s retry loop ran"


def _tiny_tokenizer(tmp_path):
    from support.data import write_tokenizer_fixture

    return write_tokenizer_fixture(tmp_path, ["a tiny corpus for a tiny tokenizer"] * 20)
