"""Partial quantization: `--exclude REGEX` and the `--max-drop` sensitivity scan, on every backend."""

import csv
import json

import onnx
import pytest
import torch
from conftest import run_cli, snapshot, tiny_classifier

from hfcompress.errors import UsageError
from hfcompress.quantization import OnnxDynamicInt8Config, TorchaoInt8WeightConfig, quantize
from hfcompress.quantization.partial import node_module
from hfcompress.quantization.sensitivity import choose, metric_drop

FRAGILE = "bert.encoder.layer.3.output.dense"


@pytest.fixture(scope="module")
def fragile(tmp_path_factory, tokenizer):
    """A tiny BERT whose last FFN output layer breaks under int8, and data labelled with the model's own
    predictions (so fp32 scores 100% and any drop is the quantization's).

    Neuron 0 of the last FFN is dead (always exactly 0), so a huge weight reading it changes nothing in fp32 but
    takes over every row's int8 scale and rounds the row's other weights to zero; the layer's weights are scaled up
    so the FFN dominates the last hidden state, and losing it changes the predictions.
    """
    from hfcompress.data import write_sentiment_task

    root = tmp_path_factory.mktemp("fragile")
    model = tiny_classifier("bert", seed=1, hidden=64, intermediate_size=128, initializer_range=0.2)
    last = model.bert.encoder.layer[-1]
    with torch.no_grad():
        last.intermediate.dense.weight[0] = 0
        last.intermediate.dense.bias[0] = -20.0
        last.output.dense.weight *= 20
        last.output.dense.weight[:, 0] = 1e4
    source = write_sentiment_task(root / "source", n_train=96, n_dev=48, seed=3)
    texts = {s: [r["sentence"] for r in csv.DictReader(open(source / "sst2" / f"{s}.tsv"), delimiter="\t")]
             for s in ("train", "dev")}  # fmt: skip

    def margin(sentences):
        with torch.no_grad():
            logits = model(**tokenizer(sentences, padding=True, return_tensors="pt")).logits
        return logits[:, 1] - logits[:, 0]

    with torch.no_grad():  # balance the predicted labels, so a broken model cannot score well by luck
        model.classifier.bias[1] -= torch.cat([margin(texts["train"]), margin(texts["dev"])]).median()
    (root / "data" / "sst2").mkdir(parents=True)
    for split, rows in texts.items():
        labels = (margin(rows) > 0).long().tolist()
        lines = ["sentence\tlabel"] + [f"{t}\t{label}" for t, label in zip(rows, labels)]
        (root / "data" / "sst2" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    return root


def scan_of(out):
    report = json.loads((out / "compression.json").read_text())
    return report, report["result"]["quantization"]["sensitivity"]


@pytest.mark.parametrize("method", ["onnx-int8-dynamic", "torchao-int8-weight", "bnb-int8"])
def test_scan_keeps_the_fragile_layer(tmp_path, fragile, method):
    out = tmp_path / "out"
    # bitsandbytes loads the model once per measurement: its scan leaves out the first two blocks by name.
    exclude = ["--exclude", r"layer\.[01]\."] if method == "bnb-int8" else []
    result = run_cli("quantize", fragile / "model", "--method", method, "--task", "sst2", "--data-dir",
                     fragile / "data", "--max-drop", "20", "--scan-samples", "96", "--latency-runs", "0",
                     "--output-dir", out, *exclude)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report, scan = scan_of(out)
    assert scan["split"] == "train" and scan["rows"] == 96 and scan["baseline"] == 1.0
    assert scan["drop_unit"] == "accuracy points"
    # Alone, the fragile layer costs about half the rows (labels are balanced); no other layer comes close.
    assert scan["layers"][FRAGILE] > 30
    assert max(drop for name, drop in scan["layers"].items() if name != FRAGILE) < 15
    assert scan["kept"] == [FRAGILE]
    assert set(scan["quantized"]) == set(scan["layers"]) - {FRAGILE}
    assert scan["drop"] <= 20
    assert report["steps"][-1]["settings"]["sensitivity_scan"]["kept"] == [FRAGILE]
    assert FRAGILE in report["result"]["quantization"]["kept_in_full_precision"] or method.startswith("onnx")
    assert report["result"]["metrics"]["accuracy"] >= 0.75  # the dev rows: the fragile layer was kept
    assert "Kept in full precision by the scan: " + FRAGILE in " ".join(result.stdout.split())
    if exclude:
        assert not any(".layer.0." in name or ".layer.1." in name for name in scan["layers"])
        assert len(scan["layers"]) == 12


def test_onnx_graph_keeps_excluded_nodes_in_fp32(tmp_path, fragile):
    out = tmp_path / "out"
    result = run_cli("quantize", fragile / "model", "--method", "onnx-int8-dynamic", "--exclude",
                     r"intermediate\.dense$", "--latency-runs", "0", "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    graph = onnx.load(str(out / "model.onnx")).graph
    fp32 = {node_module(n.name) for n in graph.node if n.op_type == "MatMul" and "intermediate" in n.name}
    int8 = {node_module(n.name) for n in graph.node if n.op_type == "MatMulInteger"}
    assert fp32 == {f"bert.encoder.layer.{i}.intermediate.dense" for i in range(4)}
    assert not any("intermediate" in name for name in int8)
    assert any("output.dense" in name for name in int8)
    report = json.loads((out / "compression.json").read_text())
    kept = report["result"]["quantization"]["kept_in_full_precision"]
    assert kept == sorted(f"/model/bert/encoder/layer.{i}/intermediate/dense/MatMul" for i in range(4))
    assert report["steps"][-1]["settings"]["excluded_modules"] == sorted(fp32)


def test_python_api_exclude_torchao(tmp_path, fragile, tokenizer):
    info = quantize(
        str(fragile / "model"), TorchaoInt8WeightConfig(exclude=r"layer\.3\."), tmp_path / "out", tokenizer
    )
    kept = set(info["kept_in_full_precision"])
    assert {f"bert.encoder.layer.3.{m}" for m in ("intermediate.dense", "output.dense")} <= kept
    assert not any(name.startswith("bert.encoder.layer.2.") for name in kept)
    config = json.loads((tmp_path / "out" / "config.json").read_text())["quantization_config"]
    assert FRAGILE in json.dumps(config)


def test_choose_bisects_to_the_largest_safe_prefix():
    sensitivity = {"a": 0.1, "b": 0.0, "c": 3.0, "d": 0.2}
    measured = []

    def measure(names):  # drops add up; quantizing c costs 3 points
        measured.append(tuple(names))
        return sum(sensitivity[n] for n in names)

    chosen, drop = choose(list(sensitivity), sensitivity, measure, max_drop=1.0)
    assert chosen == ["b", "a", "d"] and drop == pytest.approx(0.3)
    assert measured[0] == ("b", "a", "d", "c")  # everything first, then bisection
    assert choose(list(sensitivity), sensitivity, measure, max_drop=5.0)[0] == ["b", "a", "d", "c"]
    assert choose(list(sensitivity), sensitivity, lambda names: 9.0, max_drop=1.0) == ([], 0.0)


def test_metric_drop_units():
    class Accuracy:
        lower_is_better = False

    class Perplexity:
        lower_is_better = True

    assert metric_drop(Accuracy, 0.9, 0.88) == pytest.approx(2.0)
    assert metric_drop(Perplexity, 20.0, 20.4) == pytest.approx(0.02)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--exclude", "layer[", "--method", "onnx-int8-dynamic"], "--exclude 'layer[' is not a valid regular"),
        (["--exclude", "decoder", "--method", "torchao-int8-weight"], "--exclude 'decoder' matches no Linear"),
        (["--max-drop", "1", "--method", "onnx-int8-dynamic"], "--max-drop measures the task metric"),
        (["--max-drop", "-1", "--method", "bnb-int8"], "--max-drop must be a finite number of 0 or more"),
        (["--scan-samples", "0", "--method", "bnb-int8"], "--scan-samples must be at least 1"),
    ],
)
def test_bad_partial_settings(tmp_path, fragile, extra, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_cli("quantize", fragile / "model", *extra, "--latency-runs", "0", "--output-dir", out,
                     "--overwrite-output-dir")  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in " ".join(result.stderr.split())
    assert snapshot(out) == {"keep.txt": b"mine"}


def test_scan_without_task_is_refused_in_python(tmp_path, fragile, tokenizer):
    with pytest.raises(UsageError, match="pass --task"):
        quantize(str(fragile / "model"), OnnxDynamicInt8Config(max_drop=1.0), tmp_path / "out", tokenizer)


def test_onnx_excluded_query_layers_keep_attention_unfused(tmp_path, fragile):
    """The tiny BERT's attention is fused into one node by default; excluding a query projection keeps it apart."""
    out = tmp_path / "out"
    result = run_cli("quantize", fragile / "model", "--method", "onnx-int8-dynamic", "--exclude",
                     r"attention\.self\.query", "--latency-runs", "0", "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    graph = onnx.load(str(out / "model.onnx")).graph
    assert not any(n.op_type in ("Attention", "QAttention") for n in graph.node)
    fp32 = {node_module(n.name) for n in graph.node if n.op_type == "MatMul" and n.name.endswith("query/MatMul")}
    assert fp32 == {f"bert.encoder.layer.{i}.attention.self.query" for i in range(4)}
    assert any(node_module(n.name).endswith("self.key") for n in graph.node if n.op_type == "MatMulInteger")
