"""`hfcompress benchmark`: the rows, files and charts of a comparison, for classifiers and causal LMs."""

import csv
import json

import pytest
import torch
from conftest import snapshot

from hfcompress.benchmark.output import pareto_front
from hfcompress.benchmark.run import unique_labels
from hfcompress.cli.main import main

PNG = b"\x89PNG\r\n\x1a\n"


def half_zeroed(source, target):
    """A copy of `source` with every other weight of each linear layer set to zero (sparsity 0.5 exactly)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(source)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.weight.data.view(-1)[::2] = 0
    model.save_pretrained(target)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    return model


def test_classifiers_pytorch_and_onnx(tmp_path, quant_model_dir, tiny_glue_dir):
    from hfcompress.tasks import GlueTaskConfig

    sparse = tmp_path / "sparse"
    half_zeroed(quant_model_dir, sparse)
    onnx = tmp_path / "int8"
    assert main(["quantize", str(quant_model_dir), "--method", "onnx-int8-dynamic", "--output-dir", str(onnx),
                 "--latency-runs", "0"]) == 0  # fmt: skip
    out = tmp_path / "bench"
    data = ["--task", "sst2", "--data-dir", str(tiny_glue_dir)]
    args = ["benchmark", str(quant_model_dir), str(sparse), str(onnx), *data, "--output-dir", str(out),
            "--rounds", "2", "--latency-runs", "1"]  # fmt: skip
    assert main(args) == 0
    result = json.loads((out / "benchmark.json").read_text())
    rows = result["rows"]
    assert [r["model"] for r in rows] == [str(quant_model_dir), str(sparse), str(onnx)]
    assert [r["backend"] for r in rows] == ["transformers", "transformers", "onnxruntime"]
    assert [r["label"] for r in rows] == [quant_model_dir.name, "sparse", "int8"]
    # The metric is the task's own evaluation of the same model.
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    task = GlueTaskConfig(task="sst2", data_dir=str(tiny_glue_dir))
    splits = task.load_splits(need_train=False)
    model = AutoModelForSequenceClassification.from_pretrained(sparse).eval()
    expected = task.evaluate(model, AutoTokenizer.from_pretrained(sparse), splits, 128)
    assert rows[1]["metrics"] == pytest.approx(expected)
    assert rows[0]["sparsity"] == 0.0 and rows[1]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert rows[2]["size_bytes"] < rows[0]["size_bytes"] / 2 and rows[0]["parameters"] == rows[1]["parameters"]
    for row in rows:
        assert set(row["latency"]) == {"batch_1", "batch_32", "speedup"}
        lo, mid, hi = (row["latency"]["batch_1"][k] for k in ("min", "median", "max"))
        assert 0 < lo <= mid <= hi
    assert rows[0]["latency"]["speedup"]["batch_1"] == {"median": 1.0, "min": 1.0, "max": 1.0}
    assert result["setup"]["rounds"] == 2 and "interleaved" in result["setup"]["statistic"]

    with open(out / "benchmark.csv", newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert [line["model"] for line in lines] == [r["model"] for r in rows]
    assert float(lines[1]["sparsity"]) == rows[1]["sparsity"] and "batch_1_ms_median" in lines[0]
    for chart in ("metric_vs_latency.png", "metric_vs_size.png"):
        assert (out / chart).read_bytes()[:8] == PNG and (out / chart).stat().st_size > 10_000

    before = snapshot(out)
    assert main(args) == 2  # an existing result is never replaced without --overwrite_output_dir
    assert snapshot(out) == before


def test_causal_lms_report_perplexity_and_decode_speed(tmp_path, tiny_lm_dirs, text_files):
    out = tmp_path / "bench"
    # One model, one round: a decode measurement is seven generate() calls of up to 64 tokens.
    data = ["--task", "causal-lm", "--validation-file", str(text_files["validation"])]
    args = [
        "benchmark",
        str(tiny_lm_dirs["llama"]),
        *data,
        "--output-dir",
        str(out),
        "--rounds",
        "1",
        "--latency-runs",
        "1",
    ]
    assert main(args) == 0
    result = json.loads((out / "benchmark.json").read_text())
    assert result["task"]["lower_is_better"] and result["task"]["score_name"] == "perplexity"
    for row in result["rows"]:
        assert row["score"] == row["metrics"]["perplexity"] > 1
        assert {"prefill_batch_1", "decode_per_token"} <= set(row["latency"])
    assert (out / "metric_vs_latency.png").read_bytes()[:8] == PNG


def test_labels_name_the_parent_folders_only_where_folder_names_clash():
    names = ["runs/teacher", "runs/a/01-prune", "runs/b/01-prune", "x/c/d", "y/c/d", "Qwen/Qwen2.5-0.5B"]
    assert unique_labels(names) == ["teacher", "a/01-prune", "b/01-prune", "x/c/d", "y/c/d", "Qwen2.5-0.5B"]


def test_pareto_front():
    points = [(1.0, 0.80), (2.0, 0.90), (3.0, 0.85), (4.0, 0.95), (2.5, 0.90)]
    assert pareto_front(points, lower_is_better=False) == [0, 1, 3]
    perplexity = [(1.0, 30.0), (2.0, 20.0), (3.0, 25.0)]
    assert pareto_front(perplexity, lower_is_better=True) == [0, 1]


@pytest.mark.parametrize(
    "models,message",
    [
        (["{missing}"], "does not exist"),
        (["{lm}"], "causal language model"),
        (["{teacher}", "{teacher}"], "named twice"),
    ],
)
def test_bad_models_are_refused_before_any_work(tmp_path, tiny_teacher_dir, tiny_glue_dir, tiny_lm_dirs, models,
                                                message, capsys):  # fmt: skip
    names = {"missing": tmp_path / "nope", "lm": tiny_lm_dirs["llama"], "teacher": tiny_teacher_dir}
    out = tmp_path / "bench"
    argv = ["benchmark", *[m.format(**{k: str(v) for k, v in names.items()}) for m in models], "--task", "sst2",
            "--data-dir", str(tiny_glue_dir), "--output-dir", str(out)]  # fmt: skip
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_another_busy_process_is_seen():
    """A process spinning on a core shows in busy_fraction (this process's own work is not counted)."""
    import os
    import subprocess
    import sys

    from hfcompress.benchmark.run import busy_fraction

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert busy_fraction(0.5) >= 0.6 / (os.cpu_count() or 1)  # one whole core, give or take
    finally:
        spinner.kill()
        spinner.wait()


def test_models_that_do_not_fit_in_memory_are_refused():
    from hfcompress.benchmark.run import available_memory_bytes, check_memory
    from hfcompress.errors import UsageError

    sizes = {"out/a": 6_000_000_000, "out/b": 2_000_000_000}
    check_memory(sizes, 9_000_000_000)  # fits
    check_memory(sizes, None)  # memory unknown: nothing to say
    with pytest.raises(UsageError) as err:
        check_memory(sizes, 7_000_000_000)
    assert str(err.value) == (
        "The 2 models' weights take 8.0 GB on disk, more than the 7.0 GB of free memory, and the benchmark keeps "
        "every model loaded to interleave them; benchmark fewer at a time (the largest is out/a, 6.0 GB)."
    )
    assert 0 < available_memory_bytes() < 10**13  # this machine's /proc/meminfo is read
