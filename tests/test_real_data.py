"""Runs on the real GLUE files in ../shared/data/glue with the real pretrained MiniLM."""

import json

import pytest
from conftest import SHARED_GLUE, run_cli
from transformers import AutoModelForSequenceClassification

pytestmark = pytest.mark.slow


def test_distill_minilm_on_real_sst2(tmp_path):
    out = tmp_path / "sst2"
    result = run_cli(
        "distill", "minilm", "--task", "sst2", "--data-dir", SHARED_GLUE, "--max-train-samples", "96",
        "--max-eval-samples", "64", "--student-layers", "3", "--max-steps", "3", "--per-device-train-batch-size",
        "16", "--latency-runs", "1", "--output-dir", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "compression.json").read_text())
    assert [step["method"] for step in report["steps"]] == ["finetune", "distillation"]
    assert report["source"]["parameters"] == 22_713_986  # MiniLM-L6-H384 with a 2-label head
    assert report["result"]["parameters"] < report["source"]["parameters"]
    for side in ("source", "result"):
        assert 0.0 < report[side]["metrics"]["accuracy"] < 1.0
    student = AutoModelForSequenceClassification.from_pretrained(out)
    assert student.config.num_hidden_layers == 3
    assert (out / "teacher" / "model.safetensors").is_file()


def test_evaluate_rte_string_labels(tmp_path):
    # An untrained head must be refused, and a fine-tuned RTE model evaluated on the string-labelled dev set.
    out = tmp_path / "rte"
    result = run_cli(
        "finetune", "minilm", "--task", "rte", "--data-dir", SHARED_GLUE, "--max-train-samples", "32",
        "--max-eval-samples", "32",
        "--max-steps", "2", "--per-device-train-batch-size", "16", "--latency-runs", "0", "--output-dir", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    eval_json = tmp_path / "rte.json"
    result = run_cli("evaluate", out, "--task", "rte", "--data-dir", SHARED_GLUE, "--latency-runs", "0",
                     "--output-file", eval_json)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads(eval_json.read_text())
    accuracy = evaluated["metrics"]["accuracy"]
    assert 0.0 < accuracy < 1.0
    assert round(accuracy * 277) == pytest.approx(accuracy * 277, abs=1e-3)  # a whole number of the 277 dev rows
