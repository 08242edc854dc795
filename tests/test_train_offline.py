"""`python -m hopfield_attention.train` with a dataset missing while offline: one message, status 1, in seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from hopfield_attention.runs.record import read_record

from support.data import write_tokenizer_fixture


def test_missing_dataset_offline_exits_with_the_message_alone(tmp_path):
    tokenizer = write_tokenizer_fixture(tmp_path, ["a tiny corpus for a tiny tokenizer"] * 20)
    command = [sys.executable, "-m", "hopfield_attention.train", "experiment=t1_gpt2_small_wikitext103_softmax",
               "model=gpt2_tiny", "trainer=cpu", f"data.tokenizer={tokenizer}", "data.num_workers=0", "data.num_proc=1", "data.block_size=32",
               f"data.hf_cache_dir={tmp_path / 'empty_hf_cache'}", f"paths.cache_dir={tmp_path / 'cache'}",
               f"paths.log_dir={tmp_path / 'logs'}"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    start = time.monotonic()
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - start

    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert "'wikitext103'" in result.stderr and "'Salesforce/wikitext'" in result.stderr
    assert "data.local_path=" in result.stderr
    assert seconds < 60, f"took {seconds:.0f} s"  # interpreter and imports included; no retry loop
    (run_dir,) = (tmp_path / "logs" / "runs" / "t1_gpt2_small_wikitext103_softmax").iterdir()
    record = read_record(run_dir / "results.json")
    assert record["status"] == "failed" and "wikitext103" in str(record["error"])
