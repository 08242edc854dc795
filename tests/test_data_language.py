"""Language datamodules read tiny local copies in the real schemas through the real configs."""

import shutil

import datasets
import numpy as np
import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from hopfield_attention.data import LanguageDataModule
from hopfield_attention.data.token_cache import read_token_file

from support.data import (
    data_config,
    write_bookcorpus_fixture,
    write_cnn_dailymail_fixture,
    write_wikitext_fixture,
)


def build(name, overrides, tmp_path):
    datamodule = instantiate(data_config(name, overrides, tmp_path / "unused_cache"))
    assert isinstance(datamodule, LanguageDataModule)
    return datamodule


def construct(name, overrides, tmp_path):
    """The config's class called directly, so its own exception type reaches the test (Hydra wraps it)."""
    config = OmegaConf.to_container(data_config(name, overrides, tmp_path / "unused_cache"), resolve=True)
    return get_class(config.pop("_target_"))(**config)


def test_wikitext_blocks_cover_the_split_and_decode_to_the_raw_text(tmp_path):
    overrides = write_wikitext_fixture(tmp_path)
    datamodule = build("wikitext103", overrides, tmp_path)
    datamodule.prepare_data()
    datamodule.setup("fit")

    assert datamodule.block_size == 32
    assert datamodule.vocab_size == len(datamodule.tokenizer) == 300
    batch = next(iter(datamodule.train_dataloader()))
    assert set(batch) == {"input_ids"}
    assert batch["input_ids"].shape == (4, 32) and batch["input_ids"].dtype == torch.long

    # The token file is the raw split, rows joined as they are (they end with "\n" already).
    validation = datamodule.blocks["validation"]
    tokens = np.asarray(validation.token_file.open())
    raw_rows = datamodule.load_raw_splits()["validation"]["text"]
    assert datamodule.tokenizer.decode(tokens.tolist()) == "".join(raw_rows)

    # The eval loader yields every block once, in order, none dropped; windows overlap by one token,
    # so each next-token target but the short tail is predicted exactly once.
    seen = torch.cat([b["input_ids"] for b in datamodule.val_dataloader()])
    assert seen.shape == (len(validation), 32)
    assert len(validation) == (len(tokens) - 32) // 31 + 1
    assert torch.equal(seen[1:, 0], seen[:-1, -1])
    assert torch.equal(seen.flatten()[:32], torch.from_numpy(tokens[:32].astype(np.int64)))
    assert len(tokens) - 1 - len(validation) * 31 < 31
    assert len(datamodule.test_dataloader().dataset) > 0


def test_cnn_dailymail_reads_the_article_column_one_document_each(tmp_path):
    overrides = write_cnn_dailymail_fixture(tmp_path)
    datamodule = build("cnn_dailymail", overrides, tmp_path)
    datamodule.setup()
    train_tokens = np.asarray(datamodule.blocks["train"].token_file.open())
    eos = datamodule.tokenizer.eos_token_id
    articles = datamodule.load_raw_splits()["train"]["article"]
    assert int((train_tokens == eos).sum()) == len(articles)  # one end-of-text after every article
    first_article = datamodule.tokenizer.decode(train_tokens[: np.argmax(train_tokens == eos)].tolist())
    assert first_article == articles[0]


def test_bookcorpus_holds_out_contiguous_stretches_and_keeps_the_corpus_order(tmp_path):
    overrides = write_bookcorpus_fixture(tmp_path)
    datamodule = build("bookcorpus", overrides, tmp_path)
    carved = datamodule.load_raw_splits()
    original = datasets.Dataset.from_parquet(str(tmp_path / "data" / "train-00000-of-00001.parquet"))["text"]
    assert len(original) == 400
    # 10% of all rows each, at the end of the corpus: [train | validation | test], nothing shuffled.
    assert list(carved["train"]["text"]) == original[:320]
    assert list(carved["validation"]["text"]) == original[320:360]
    assert list(carved["test"]["text"]) == original[360:]

    # The token stream of each stage is its sentences in corpus order, each ended by the separator "\n".
    datamodule.prepare_data()
    datamodule.setup()
    for stage, rows in (("train", original[:320]), ("test", original[360:])):
        tokens = np.asarray(datamodule.blocks[stage].token_file.open())
        assert datamodule.tokenizer.decode(tokens.tolist()) == "".join(row + "\n" for row in rows)


@pytest.mark.parametrize(
    ("holdout", "message"),
    [
        ({"sizes": {"validation": 0.1}}, r"holdout.order=None; allowed: 'contiguous' .* or 'shuffled'"),
        ({"sizes": {"validation": 0.1}, "order": "random"}, r"holdout.order='random'"),
        (
            {"sizes": {"validation": 0.1}, "order": "contiguous", "seed": 1},
            r"order 'contiguous' takes the keys \['order', 'sizes'\]",
        ),
        (
            {"sizes": {"validation": 0.1}, "order": "shuffled"},
            r"order 'shuffled' takes the keys \['order', 'seed', 'sizes'\]",
        ),
        ({"sizes": {"train": 0.1}, "order": "contiguous"}, r"only 'validation' and 'test' can be held out"),
        (
            {"sizes": {"validation": 1.5}, "order": "contiguous"},
            r"validation=1.5; allowed: a fraction in \(0, 1\) or a count",
        ),
    ],
)
def test_holdout_must_say_how_it_is_drawn(tmp_path, holdout, message):
    with pytest.raises(ValueError, match=message):
        LanguageDataModule(name="bookcorpus", splits={"train": "train"}, holdout=holdout)


def test_shuffled_holdout_is_fixed_by_its_seed_and_disjoint(tmp_path):
    overrides = {
        **write_bookcorpus_fixture(tmp_path),
        "holdout": {"sizes": {"validation": 40, "test": 0.1}, "order": "shuffled", "seed": 3},
    }
    config = data_config("bookcorpus", {}, tmp_path / "cache")
    config.holdout = overrides.pop("holdout")  # replace, not merge: the config's own holdout is contiguous
    first = instantiate(OmegaConf.merge(config, overrides)).load_raw_splits()
    again = instantiate(OmegaConf.merge(config, overrides)).load_raw_splits()
    assert (len(first["train"]), len(first["validation"]), len(first["test"])) == (320, 40, 40)  # sizes of all 400 rows
    for stage in first:
        assert list(first[stage]["text"]) == list(again[stage]["text"])
    original = datasets.Dataset.from_parquet(str(tmp_path / "data" / "train-00000-of-00001.parquet"))["text"]
    assert list(first["validation"]["text"]) != original[320:360]  # drawn, not the tail
    assert sorted(row for stage in first for row in first[stage]["text"]) == sorted(original)


def test_holdout_that_leaves_no_train_rows_is_refused(tmp_path):
    overrides = {**write_bookcorpus_fixture(tmp_path), "holdout": {"sizes": {"validation": 0.5, "test": 0.5}}}
    with pytest.raises(ValueError, match=r"hold out 400 of the 400 train rows, leaving none"):
        build("bookcorpus", overrides, tmp_path).load_raw_splits()


def test_second_run_reuses_the_token_cache_without_reading_the_data(tmp_path):
    overrides = write_wikitext_fixture(tmp_path)
    first = build("wikitext103", overrides, tmp_path)
    first.prepare_data()
    paths = {stage: first.token_file_path(stage) for stage in ("train", "validation", "test")}
    stamps = {stage: path.stat().st_mtime_ns for stage, path in paths.items()}

    shutil.rmtree(overrides["local_path"])  # a run that tokenized again would now fail
    second = build("wikitext103", overrides, tmp_path)
    second.prepare_data()
    second.setup()
    assert {stage: second.token_file_path(stage) for stage in paths} == paths
    assert {stage: path.stat().st_mtime_ns for stage, path in paths.items()} == stamps
    assert second.blocks["train"].token_file.num_tokens > 0
    assert paths["train"].parent.name == "wikitext103" and paths["train"].name.startswith("train-tokenizer-")


def test_cache_key_changes_with_the_split_and_the_data(tmp_path):
    overrides = write_wikitext_fixture(tmp_path)
    datamodule = build("wikitext103", overrides, tmp_path)
    other_split = build("wikitext103", {**overrides, "splits": {"train": "train", "validation": "test"}}, tmp_path)
    assert datamodule.token_file_path("validation") != other_split.token_file_path("validation")
    hub = build("wikitext103", {**overrides, "local_path": None}, tmp_path)
    assert hub.token_file_path("train") != datamodule.token_file_path("train")


@pytest.mark.parametrize("bad", [0, -3, 1, 2.5, True])
def test_block_size_must_be_an_integer_of_at_least_two(tmp_path, bad):
    overrides = write_wikitext_fixture(tmp_path)
    with pytest.raises(ValueError, match=rf"block_size={bad!r}.*integer >= 2"):
        construct("wikitext103", {**overrides, "block_size": bad}, tmp_path)


def test_unknown_split_name_names_the_available_splits(tmp_path):
    overrides = write_wikitext_fixture(tmp_path)
    datamodule = build("wikitext103", {**overrides, "splits": {"train": "train", "validation": "valid"}}, tmp_path)
    with pytest.raises(ValueError, match=r"split 'valid'.*available splits: \['test', 'train', 'validation'\]"):
        datamodule.prepare_data()


def test_unknown_stage_in_splits_is_rejected_at_once(tmp_path):
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['dev'\].*allowed: \['train', 'validation', 'test'\]"):
        LanguageDataModule(name="wikitext103", splits={"train": "train", "dev": "validation"})


def test_unknown_text_field_names_the_columns(tmp_path):
    overrides = write_cnn_dailymail_fixture(tmp_path)
    datamodule = build("cnn_dailymail", {**overrides, "text_field": "story"}, tmp_path)
    with pytest.raises(ValueError, match=r"text_field='story'.*available columns: \['article', 'highlights', 'id'\]"):
        datamodule.prepare_data()


def test_token_cache_leaves_no_tokenized_copy_behind_and_num_proc_keeps_the_order(tmp_path):
    overrides = write_wikitext_fixture(tmp_path)
    serial = build("wikitext103", overrides, tmp_path)
    serial.source.load()  # the dataset's own Arrow copy (reused by every later load) exists from here on
    hf_cache = tmp_path / "hf_cache"
    files_before = sorted(p.relative_to(hf_cache) for p in hf_cache.rglob("*") if p.is_file())
    serial.prepare_data()
    assert sorted(p.relative_to(hf_cache) for p in hf_cache.rglob("*") if p.is_file()) == files_before
    written = sorted(p.suffix for p in (tmp_path / "token_cache" / "wikitext103").iterdir())
    assert written == [".bin"] * 3 + [".json"] * 3  # nothing else: the temporary Arrow folder is gone

    parallel = build("wikitext103", {**overrides, "num_proc": 2, "cache_dir": str(tmp_path / "parallel")}, tmp_path)
    parallel.prepare_data()
    for stage in ("train", "validation", "test"):
        a, b = (read_token_file(dm.token_file_path(stage)).open() for dm in (serial, parallel))
        assert len(a) > 0 and np.array_equal(a, b)
