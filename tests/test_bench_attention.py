"""scripts/bench_attention.py: the quick form runs every case and method end to end and writes its table as JSON
with ratios to softmax; the default plan holds the issue's points; the crossover width follows from the rows."""

import json
import subprocess
import sys
from itertools import groupby
from pathlib import Path

import pytest

from hopfield_attention.attention.paths import IMPLEMENTATIONS

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
SCRIPT = SCRIPTS / "bench_attention.py"
sys.path.insert(0, str(SCRIPTS))

from attention_bench.crossover import crossover  # noqa: E402
from attention_bench.plan import CPU_PLAN, CUDA_PLAN, QUICK_PLAN  # noqa: E402

CASES = {"layer", "stack", "gpt2-small", "gpt2-medium", "vit-base"}
METHODS = {"softmax"} | {f"{v}-{i}" for v in ("mha", "realformer") for i in (*IMPLEMENTATIONS, "auto")}


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One --quick run (a minute or so), shared by the slow tests below."""
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    done = bench("--quick", "--device", "cpu", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


@pytest.mark.slow
def test_quick_run_measures_every_case_and_method(quick):
    report, stdout = quick
    rows = report["results"]
    assert report["settings"]["device"] == "cpu" and report["settings"]["clock"] == "cpu"
    assert report["machine"]["threads"] >= 1 and report["elapsed_s"] > 0
    assert {(r["case"], r["method"]) for r in rows} == {(c, m) for c in CASES for m in METHODS}
    for row in rows:
        assert row["time_ms"] > 0 and row["peak_mb"] > 0, row
        assert row["time_ratio"] > 0 and row["memory_ratio"] > 0, row
        if row["method"] == "softmax":
            assert row["time_ratio"] == 1.0 and row["memory_ratio"] == 1.0
    assert {r["seq_len"] for r in rows if r["case"] == "vit-base"} == {17}  # 4 x 4 patches + the class token
    assert [p["case"] for p in report["points"]] == [p.case for p in QUICK_PLAN]
    for method in METHODS:
        assert method in stdout  # the printed table


@pytest.mark.slow
def test_quick_layer_case_sweeps_the_stacked_width(quick):
    report, _ = quick
    layer = [r for r in report["results"] if r["case"] == "layer"]
    depths = {m: sorted(r["depth"] for r in layer if r["method"] == m) for m in METHODS}
    assert depths["softmax"] == [1]
    assert depths["mha-explicit"] == depths["realformer-fused"] == [1, 2]  # dense: the same at every n >= 2
    assert depths["mha-stacked"] == depths["realformer-auto"] == [1, 2, 3]
    head_dim = report["settings"]["head_dim"]
    assert all(r["stacked_width"] == r["depth"] * head_dim for r in layer)
    by = {(r["method"], r["depth"]): r for r in layer}
    # Counted bytes, not timings: the first stacked layer is plain SDPA; a dense state costs a T x T per layer.
    assert by[("mha-stacked", 1)]["memory_ratio"] == 1.0
    assert by[("mha-explicit", 2)]["memory_ratio"] > 1.0
    assert by[("mha-stacked", 3)]["peak_mb"] > by[("mha-stacked", 2)]["peak_mb"]  # gradients of more earlier q, k


@pytest.mark.slow
def test_quick_auto_rows_say_what_auto_chose(quick):
    report, stdout = quick
    for row in report["results"]:
        if row["implementation"] != "auto":
            assert "auto_choices" not in row
            continue
        expected = 1 if row["case"] == "layer" else row["layers"]  # one call per attention layer of the step
        assert len(row["auto_choices"]) == expected, row
        assert set(row["auto_choices"]) <= set(IMPLEMENTATIONS)
        # The printed table says them too, run-length encoded in layer order ("explicit x2").
        runs = ", ".join(f"{name} x{len(list(group))}" for name, group in groupby(row["auto_choices"]))
        assert runs in stdout


@pytest.mark.slow
def test_quick_report_ends_with_the_crossover(quick):
    report, stdout = quick
    result = report["crossover"]
    assert result == crossover(report)
    assert {case["variant"] for case in result["per_case"]} == {"mha", "realformer"}
    assert result["recommended_max_width"] % report["settings"]["head_dim"] == 0
    assert "recommended STACKED_MAX_WIDTH['cpu']" in stdout


def synthetic_report(stacked_ms, dense_ms: dict, head_dim=64, seq_len=1024) -> dict:
    """A report holding only layer rows: stacked at the given depths, the dense paths at n = 1 and 2."""
    rows = [dict(case="layer", seq_len=seq_len, depth=n, variant="mha", implementation="stacked", time_ms=t)
            for n, t in stacked_ms.items()]  # fmt: skip
    for implementation, t in dense_ms.items():
        rows += [dict(case="layer", seq_len=seq_len, depth=n, variant="mha", implementation=implementation,
                      time_ms=t) for n in (1, 2)]  # fmt: skip
    return {"settings": {"device": "cpu", "dtype": "float32", "head_dim": head_dim}, "results": rows}


def test_crossover_is_where_the_fitted_stacked_time_meets_the_cheaper_dense_path():
    depths = (1, 2, 4, 8, 12)
    report = synthetic_report({n: 2.0 + 0.01 * 64 * n for n in depths}, {"explicit": 7.0, "fused": 5.0})
    (case,) = crossover(report)["per_case"]
    assert case["cheaper_dense_path"] == "fused"
    assert case["fit_ms"]["intercept"] == pytest.approx(2.0) and case["fit_ms"]["per_width"] == pytest.approx(0.01)
    assert case["crossover_width"] == pytest.approx(300.0) and case["crossover_within_measured"]
    assert case["widest_no_slower"] == 256  # 4.56 ms at 256, 7.12 ms at 512
    # Layers 1..4 (width <= 256) are cheaper stacked, layer 5 (320) is not: the threshold is 256.
    assert crossover(report)["recommended_max_width"] == 256


def test_crossover_never_stacks_when_stacking_is_always_dearer_and_always_when_cheaper():
    dearer = synthetic_report({1: 6.0, 2: 7.0, 4: 9.0}, {"explicit": 5.0})
    assert crossover(dearer)["recommended_max_width"] == 0
    cheaper = synthetic_report({1: 1.0, 2: 1.1, 4: 1.3}, {"explicit": 5.0})
    result = crossover(cheaper)
    assert result["recommended_max_width"] == 4 * 64  # the deepest layer measured
    assert not result["per_case"][0]["crossover_within_measured"]  # the line meets dense only beyond 256


def test_crossover_command_reads_a_bench_json(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(synthetic_report({n: 2.0 + 0.64 * n for n in (1, 2, 4)}, {"fused": 5.0})))
    done = bench("--crossover", str(path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "recommended STACKED_MAX_WIDTH['cpu'] = 256" in done.stdout


def test_default_plans_hold_the_issues_points():
    cpu = {(p.case, p.seq_len, p.layers, p.batch) for p in CPU_PLAN}
    assert ("gpt2-small", 1024, 12, 1) in cpu  # full GPT-2 Small, T = 1024, batch 1
    assert ("gpt2-small", 4096, 4, 1) in cpu  # 4 blocks of GPT-2 Small width, T = 4096, batch 1
    for plan in (CPU_PLAN, CUDA_PLAN):
        for case in ("stack", "gpt2-small", "gpt2-medium"):
            lengths = {p.seq_len for p in plan if p.case == case}
            assert {1024, 4096} <= lengths and (case == "stack" or lengths == {256, 1024, 2048, 4096}), case
        assert {p.case for p in plan} == CASES
        # The width sweep runs at every length of the attention stack.
        assert {p.seq_len for p in plan if p.case == "stack"} <= {p.seq_len for p in plan if p.case == "layer"}


def test_bench_rejects_bad_sizes(tmp_path):
    done = bench("--seq-lens", "1", "--out", str(tmp_path / "x.json"))
    assert done.returncode == 2 and "--seq-lens must be at least 2" in done.stderr
    done = bench("--layers", "0", "--out", str(tmp_path / "x.json"))
    assert done.returncode == 2 and "--layers must be at least 1, got 0" in done.stderr
    assert not (tmp_path / "x.json").exists()
