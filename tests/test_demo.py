"""`hfcompress demo` (the README's first command) end to end, with small settings so it stays cheap."""

import json

import pytest
from conftest import run_cli


@pytest.mark.slow
def test_demo_runs_the_recipe_and_the_benchmark(tmp_path):
    out = tmp_path / "demo"
    small = ["--train-samples", "64", "--epochs", "0.5", "--rounds", "1", "--latency-runs", "1"]
    result = run_cli("demo", "--output-dir", out, *small, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "recipe" / "recipe.json").read_text())
    assert list(record["steps"]) == ["01-finetune", "02-distill", "03-quantize"]
    assert record["final"] == str(out / "recipe" / "03-quantize")
    rows = json.loads((out / "benchmark" / "benchmark.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["01-finetune", "02-distill", "03-quantize"]
    assert (
        rows[2]["backend"] == "onnxruntime" and rows[2]["size_bytes"] < rows[1]["size_bytes"] < rows[0]["size_bytes"]
    )
    assert (out / "benchmark" / "metric_vs_latency.png").is_file()
    assert "majorities of three clauses" in result.stdout and "Benchmark on sst2" in result.stdout
    dev = (out / "data" / "sst2" / "dev.tsv").read_text().splitlines()[1:]
    assert len(dev) == 400
