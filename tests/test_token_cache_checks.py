"""A token cache is checked against its metadata when opened, through the real command line: a file rewritten in
another dtype, truncated, or changed in place stops the run with one message naming the file and the `prepare`
command; that command rebuilds it, and the run then trains."""

from __future__ import annotations

import json

import numpy as np
import pytest

from support.commands import error_message, run_command
from support.runs import record, tiny_lm, train


@pytest.fixture
def prepared(tmp_path):
    """The tiny run's token cache, built by `prepare`; (overrides, the train split's token file)."""
    overrides = tiny_lm(tmp_path / "data", tmp_path / "run", f"paths.log_dir={tmp_path / 'logs'}", steps=2)
    built = run_command("prepare", *[o for o in overrides if not o.startswith("hydra.")], cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-2000:]
    token_file = next(path for path in (tmp_path / "data" / "token_cache").rglob("train-*.bin"))
    return overrides, token_file


def refused(overrides, token_file, says: str, run_dir) -> None:
    result = train(*overrides)
    assert result.returncode == 1, result.stderr[-2000:]
    message = error_message(result.stderr)
    assert len(message.splitlines()) <= 3 and "Traceback" not in result.stderr, message
    assert f"token cache {token_file}: " in message and says in message, message
    assert "rebuild it with python -m hopfield_attention.prepare experiment=quickstart_mha" in message
    assert "hydra.run.dir" not in message  # the command rebuilds the data, it is not this run
    assert record(run_dir)["status"] == "failed" and f"token cache {token_file}" in record(run_dir)["error"]["message"]


def test_a_token_file_in_another_dtype_than_its_metadata_says_stops_the_run(prepared, tmp_path):
    overrides, token_file = prepared
    ids = np.fromfile(token_file, dtype=json.loads(token_file.with_suffix(".json").read_text())["dtype"])
    ids.astype(np.uint32).tofile(token_file)  # the same ids, written as uint32 while the .json says uint16
    refused(overrides, token_file, f"{ids.size * 4:,} bytes, but", tmp_path / "run")


def test_a_truncated_token_file_stops_the_run_naming_it(prepared, tmp_path):
    overrides, token_file = prepared
    data = token_file.read_bytes()
    token_file.write_bytes(data[: len(data) // 2])
    refused(overrides, token_file, f"{len(data) // 2:,} bytes, but", tmp_path / "run")


def test_a_token_file_changed_in_place_stops_the_run_and_prepare_rebuilds_it(prepared, tmp_path):
    overrides, token_file = prepared
    original = token_file.read_bytes()
    token_file.write_bytes(original[2:4] + original[:2] + original[4:])  # same size, two ids swapped
    refused(overrides, token_file, "contents differ", tmp_path / "run")

    rebuilt = run_command("prepare", *[o for o in overrides if not o.startswith("hydra.")], cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert f"rebuilding train: token cache {token_file}" in rebuilt.stdout
    assert token_file.read_bytes() == original  # the same data, tokenized again
    trained = train(*overrides)
    assert trained.returncode == 0, trained.stderr[-2000:]
    assert record(tmp_path / "run")["status"] == "finished"
