"""scripts/bench_attention.py runs end to end and writes its table as JSON with ratios to softmax."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_attention.py"


def test_bench_writes_every_method_with_ratios(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--device", "cpu", "--cases", "layer", "vit", "--seq-lens", "5", "--layers", "1", "--repeats", "1"]
    done = subprocess.run([sys.executable, str(SCRIPT), *args, "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["settings"]["device"] == "cpu" and report["machine"]["threads"] >= 1
    rows = report["results"]
    methods = {"softmax", "mha-explicit", "mha-fused", "realformer-explicit", "realformer-fused"}
    assert {(r["case"], r["method"]) for r in rows} == {(c, m) for c in ("layer", "vit") for m in methods}
    for row in rows:
        assert row["time_ms"] > 0 and row["peak_mb"] > 0
        assert row["time_ratio"] > 0 and row["memory_ratio"] > 0
        if row["method"] == "softmax":
            assert row["time_ratio"] == 1.0 and row["memory_ratio"] == 1.0
    assert {r["seq_len"] for r in rows if r["case"] == "vit"} == {5}  # 2 x 2 patches + the class token
    assert "mha-fused" in done.stdout  # the printed table


def test_bench_rejects_a_bad_length(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--seq-lens", "1", "--out", str(tmp_path / "x.json")],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2 and "--seq-lens must be at least 2" in done.stderr
