"""Model cards rendered from real compression.json files: Hub metadata, the numbers, and snippets that run."""

import contextlib
import io
import json
import re
import shutil

import pytest
import torch
from conftest import ROOT, tiny_classifier
from huggingface_hub import ModelCard

from hfcompress.cards import CHART_NAME, template_dir, write_model_card
from hfcompress.cli.main import main
from hfcompress.errors import UsageError

TOKEN = "hf_secretXYZ0123456789abcdef"


# -- fixtures: a real distillation, and hand-written reports (schema of hfcompress/report.py) -------------------
@pytest.fixture(scope="module")
def distilled(tmp_path_factory, tiny_teacher_dir, tiny_glue_dir):
    """A real `hfcompress distill` output, from a local teacher that carries its own README."""
    root = tmp_path_factory.mktemp("distilled")
    teacher = root / "teacher"
    shutil.copytree(tiny_teacher_dir, teacher)
    (teacher / "README.md").write_text("---\nlicense: mit\nlanguage: en\n---\n# Tiny teacher\n\nTrained on SST-2.\n")
    out = root / "student"
    # A GLUE-layout folder without the generated-data marker stands for real GLUE files here.
    glue = shutil.copytree(tiny_glue_dir, root / "glue")
    (glue / "sst2" / "SYNTHETIC").unlink()
    argv = [
        "distill",
        teacher,
        "--task",
        "sst2",
        "--data-dir",
        glue,
        "--student-layers",
        "2",
        "--max-steps",
        "2",
        "--per-device-train-batch-size",
        "8",
        "--latency-runs",
        "1",
        "--output-dir",
        out,
    ]
    assert main([str(arg) for arg in argv]) == 0  # the CLI in-process: the same code path, without a new interpreter
    return out


def save_model(path, tokenizer, **config):
    """A tiny sst2 classifier saved as hfcompress saves one: labelled, safetensors, with its tokenizer."""
    model = tiny_classifier("bert", layers=2, **config)
    model.config.id2label, model.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_report(path, report):
    (path / "compression.json").write_text(json.dumps(report, indent=2))


def base_report(path, source_model, steps, **result):
    size = sum(f.stat().st_size for f in path.glob("*.safetensors")) or sum(
        f.stat().st_size for f in path.glob("*.onnx")
    )
    source = {
        "label": "original",
        "model": source_model,
        "metrics": {"accuracy": 0.912844},
        "score": 0.912844,
        "parameters": 109483778,
        "size_bytes": 437958648,
        "latency_ms": {"batch_1": 41.2, "batch_32": 1203.5},
    }
    res = {
        "label": "compressed",
        "model": str(path),
        "metrics": {"accuracy": 0.90367},
        "score": 0.90367,
        "parameters": 1058690,
        "size_bytes": size,
        "latency_ms": {"batch_1": 3.117, "batch_32": 40.25},
        **result,
    }
    ratios = {
        "score": round(0.90367 / 0.912844, 4),
        "parameters": round(1058690 / 109483778, 4),
        "size_bytes": round(size / 437958648, 4),
        "speedup_batch_1": round(41.2 / 3.117, 3),
        "speedup_batch_32": round(1203.5 / 40.25, 3),
    }
    return {
        "created": "2026-11-23T12:00:00+00:00", "task": "sst2",
        "command": f"hfcompress x {source_model} --task sst2 --output-dir {path}",
        "source": source, "result": res, "ratios": ratios, "steps": steps,
        "latency_setup": {"device": "cpu", "seq_len": 128, "threads": 2, "statistic": "median of 10 runs"},
        "versions": {"python": "3.11.7", "hfcompress": "0.1.0", "torch": "2.13.0", "transformers": "5.23.0"},
    }  # fmt: skip


@pytest.fixture(scope="module")
def pruned(tmp_path_factory, tokenizer):
    path = save_model(tmp_path_factory.mktemp("pruned"), tokenizer)
    sparsity = {
        "structure": "unstructured",
        "scope": "global",
        "global": 0.9,
        "all_parameters": 0.412,
        "per_layer": {"bert.encoder.layer.0.attention.self.query.weight": 0.9},
        "compressed_size_bytes": 301234,
        "compression": "zlib level 6 (gzip's deflate) of model.safetensors",
        "note": "Unstructured and 2:4 sparsity leave a dense file the same size and a dense runtime no faster.",
    }
    steps = [{"method": "pruning", "settings": {"sparsity": 0.9, "structure": "unstructured", "scope": "global",
              "schedule": "cubic", "end_step": 70, "schedule_history": [[10, 0.2], [20, 0.5]], "teacher": None},
              "parameters": 1058690, "size_bytes": None, "sparsity": 0.9}]  # fmt: skip
    report = base_report(path, "google-bert/bert-base-uncased", steps, sparsity=sparsity)
    steps[0]["size_bytes"] = report["result"]["size_bytes"]
    report["source"]["compressed_size_bytes"] = 405123456
    report["command"] = (
        f"hfcompress prune textattack/x --task sst2 --sparsity 0.9 --hub_token {TOKEN} --output-dir {path}"
    )
    write_report(path, report)
    return path


@pytest.fixture(scope="module")
def onnx_quantized(tmp_path_factory, tokenizer):
    """A tiny classifier exported with torch.onnx (TorchScript exporter) and quantized to int8 by ONNX Runtime."""
    pytest.importorskip("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = save_model(tmp_path_factory.mktemp("onnx"), tokenizer)
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    (path / "model.safetensors").unlink()  # the ONNX folder holds the graph, config and tokenizer only
    inputs = tokenizer(["a fine film"], return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    dynamic = {name: {0: "batch", 1: "sequence"} for name in names}
    torch.onnx.export(model, tuple(inputs[n] for n in names), path / "model.onnx", input_names=names,
                      output_names=["logits"], dynamic_axes=dynamic, dynamo=False)  # fmt: skip
    quantize_dynamic(path / "model.onnx", path / "model_quantized.onnx", weight_type=QuantType.QInt8)
    (path / "model.onnx").unlink()
    steps = [{"method": "quantization", "settings": {"backend": "onnxruntime", "mode": "dynamic",
              "weight_type": "int8", "per_channel": False, "file": "model_quantized.onnx"},
              "parameters": 1058690, "size_bytes": (path / "model_quantized.onnx").stat().st_size}]  # fmt: skip
    report = base_report(path, "textattack/bert-base-uncased-SST-2", steps, backend="onnxruntime")
    write_report(path, report)
    return path


@pytest.fixture(scope="module")
def bnb_quantized(tmp_path_factory, tokenizer):
    pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForSequenceClassification, BitsAndBytesConfig

    root = tmp_path_factory.mktemp("bnb")
    source = save_model(root / "source", tokenizer)
    path = root / "int8"
    model = AutoModelForSequenceClassification.from_pretrained(
        source, quantization_config=BitsAndBytesConfig(load_in_8bit=True), device_map="cpu"
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    steps = [{"method": "quantization", "settings": {"backend": "bitsandbytes", "load_in_8bit": True},
              "parameters": 1058690, "size_bytes": (path / "model.safetensors").stat().st_size}]  # fmt: skip
    report = base_report(path, "google-bert/bert-base-uncased", steps, backend="bitsandbytes", memory_bytes=2345678)
    report["source"]["memory_bytes"] = 4234560
    report["result"]["latency_ms"] = {"batch_1": 95.0, "batch_32": 3100.0}
    report["ratios"]["speedup_batch_1"], report["ratios"]["speedup_batch_32"] = 0.434, 0.388
    write_report(path, report)
    return path


# -- helpers -------------------------------------------------------------------------------------------------------
def table(card_text: str, heading: str) -> dict[str, list[str]]:
    """The markdown table under `## heading`, as {first cell: other cells}."""
    section = card_text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [cell.strip() for cell in cells[1:]] for cells in rows[1:]}


def snippet(card_text: str) -> str:
    usage = card_text.split("## How to use\n", 1)[1]
    return re.search(r"```python\n(.*?)```", usage, re.DOTALL).group(1)


def run_snippet(code: str) -> str:
    """Run the card's code as a script of its own (fresh globals, its own imports) and return what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "card-snippet", "exec"), {"__name__": "__main__"})
    return out.getvalue().strip().splitlines()[-1]


def assert_numbers_match(card_text: str, report: dict) -> None:
    """Every figure of the results table is the value in compression.json, formatted, and nothing else."""
    src, res, ratios = report["source"], report["result"], report["ratios"]
    rows = table(card_text, "Results")
    assert rows["Accuracy"][:2] == [f"{src['metrics']['accuracy']:.4f}", f"{res['metrics']['accuracy']:.4f}"]
    assert rows["Dev score (mean of metrics)"] == [
        f"{src['score']:.4f}",
        f"{res['score']:.4f}",
        f"{ratios['score']:.3f}x",
    ]
    assert rows["Parameters"] == [f"{src['parameters']:,}", f"{res['parameters']:,}", f"{ratios['parameters']:.3f}x"]
    assert rows["Size on disk"] == [
        f"{src['size_bytes'] / 1e6:.2f} MB", f"{res['size_bytes'] / 1e6:.2f} MB", f"{ratios['size_bytes']:.3f}x"
    ]  # fmt: skip
    for batch, ms in res["latency_ms"].items():
        label = f"CPU latency, {batch.replace('_', ' ')}"
        speedup = ratios[f"speedup_{batch}"]
        expected = [f"{src['latency_ms'][batch]:.2f} ms", f"{ms:.2f} ms", f"{speedup:.3f}x faster"]
        expected[2] = expected[2] if speedup >= 1 else f"{speedup:.3f}x (slower)"
        assert rows[label] == expected
    lineage = table(card_text, "Compression lineage")
    last = list(lineage.values())[-1]
    assert last[-2:] == [f"{res['parameters']:,}", f"{res['size_bytes'] / 1e6:.2f} MB"]
    setup = report["latency_setup"]
    assert f"sequence length {setup['seq_len']}, {setup['threads']} threads" in card_text


def assert_trustworthy(card_text: str) -> None:
    assert "more information needed" not in card_text.lower()
    assert TOKEN not in card_text and not re.search(r"\bnan\b", card_text)


# -- tests ---------------------------------------------------------------------------------------------------------
def test_template_is_found_in_the_source_tree():
    folder = template_dir()  # the top-level model_cards/ in a checkout, hfcompress/model_cards when installed
    for template in (ROOT / "model_cards").glob("*.j2"):
        assert folder.joinpath(template.name).read_text() == template.read_text()


def test_distilled_card(distilled, tiny_teacher_dir):
    path = write_model_card(distilled)
    text = path.read_text()
    report = json.loads((distilled / "compression.json").read_text())
    card = ModelCard.load(path)
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "text-classification"
    assert data.license == "mit"  # carried from the teacher's README
    assert data.datasets == ["nyu-mll/glue"]
    assert {"hfcompress", "distillation", "glue", "sst2"} <= set(data.tags)
    assert data.base_model is None and "base_model_relation" not in data.to_dict()  # a local teacher has no Hub id
    [result] = data.eval_results
    assert (result.dataset_type, result.dataset_config, result.dataset_split) == ("nyu-mll/glue", "sst2", "validation")
    assert result.metric_type == "accuracy" and result.metric_value == report["result"]["metrics"]["accuracy"]
    assert_numbers_match(text, report)
    assert_trustworthy(text)
    assert f"![Dev score against size on disk and CPU latency, source and compressed]({CHART_NAME})" in text
    assert (distilled / CHART_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Card of the source model" in text and "Trained on SST-2." in text  # the teacher's README, merged
    assert report["command"] in text and "Distillation" in text and "layer map (student←teacher): 0←0, 1←3" in text
    assert "| `max_steps` | 2 |" in text
    assert run_snippet(snippet(text)) in ("negative", "positive")


def test_card_is_idempotent_and_keeps_notes(distilled, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(distilled, out)
    write_model_card(out)
    first = (out / "README.md").read_bytes(), (out / CHART_NAME).read_bytes()
    write_model_card(out)
    assert ((out / "README.md").read_bytes(), (out / CHART_NAME).read_bytes()) == first

    text = (out / "README.md").read_text()
    start = "<!-- hfcompress:notes:start (your notes go here and are kept) -->"
    (out / "README.md").write_text(text.replace(start, start + "\nEvaluated by hand on 50 tweets: fine.\n"))
    write_model_card(out, repo_id="alice/tiny-student")
    text = (out / "README.md").read_text()
    assert "Evaluated by hand on 50 tweets: fine." in text
    assert 'model_id = "alice/tiny-student"' in text and ModelCard.load(out / "README.md").data.model_name == (
        "tiny-student"
    )
    write_model_card(out)  # the repo id and the notes survive a plain re-render
    assert (out / "README.md").read_text() == text


def test_card_of_another_run_is_not_inherited(distilled, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(distilled, out)
    write_model_card(out, repo_id="alice/previous-run")
    report = json.loads((out / "compression.json").read_text())
    report["created"] = "2030-01-01T00:00:00+00:00"  # a new run wrote into the folder (or copied the old card in)
    (out / "compression.json").write_text(json.dumps(report))
    text = write_model_card(out).read_text()
    assert "alice/previous-run" not in text and f'model_id = "{out.resolve()}"' in text


def test_foreign_readme_is_merged_and_trainer_card_replaced(distilled, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(distilled, out)
    (out / "README.md").write_text("---\nlicense: apache-2.0\nthumbnail: pic.png\n---\n# My run\n\nKeep this line.\n")
    text = write_model_card(out).read_text()
    assert "Keep this line." in text.split("hfcompress:notes:start")[1]
    assert ModelCard.load(out / "README.md").data.to_dict()["thumbnail"] == "pic.png"

    (out / "README.md").write_text(
        "<!-- This model card has been generated automatically according to the information the Trainer had "
        "access to. -->\n# student\n\nMore information needed\n"
    )
    text = write_model_card(out).read_text()
    assert_trustworthy(text)
    assert "# student\n" not in text.split("hfcompress:notes:start")[1]


def test_pruned_card(pruned):
    text = write_model_card(pruned).read_text()
    report = json.loads((pruned / "compression.json").read_text())
    data = ModelCard.load(pruned / "README.md").data
    assert data.base_model == "google-bert/bert-base-uncased" and data.base_model_relation == "finetune"
    assert data.license == "apache-2.0"
    assert {"pruning", "sparsity", "unstructured-sparsity"} <= set(data.tags)
    assert "quantization" not in data.tags and "distillation" not in data.tags
    assert_numbers_match(text, report)
    assert_trustworthy(text)
    rows = table(text, "Results")
    assert rows["Sparsity of the pruned layers"][1] == "0.900" and rows["Sparsity of all weights"][1] == "0.412"
    assert rows["Size after zlib compression"] == ["405.12 MB", "0.30 MB", f"{301234 / 405123456:.3f}x"]
    assert "Unstructured sparsity gives no dense speed-up" in text
    assert "schedule_history" not in text and "--hub_token <redacted>" in text
    assert run_snippet(snippet(text)) in ("negative", "positive")


def test_onnx_quantized_card(onnx_quantized):
    text = write_model_card(onnx_quantized).read_text()
    report = json.loads((onnx_quantized / "compression.json").read_text())
    data = ModelCard.load(onnx_quantized / "README.md").data
    assert data.base_model == "textattack/bert-base-uncased-SST-2" and data.base_model_relation == "quantized"
    assert data.library_name == "onnx"
    assert {"quantization", "onnx", "onnxruntime", "int8"} <= set(data.tags)
    assert_numbers_match(text, report)
    assert "Dynamic int8 quantization" in text and "No training: quantization was applied" in text
    code = snippet(text)
    assert "onnxruntime" in code and "model_quantized.onnx" in code and "hfcompress" not in code
    assert run_snippet(code) in ("negative", "positive")


def test_bitsandbytes_card(bnb_quantized):
    text = write_model_card(bnb_quantized).read_text()
    report = json.loads((bnb_quantized / "compression.json").read_text())
    data = ModelCard.load(bnb_quantized / "README.md").data
    assert data.base_model_relation == "quantized" and data.library_name == "transformers"
    assert {"quantization", "bitsandbytes", "8-bit"} <= set(data.tags) and "4-bit" not in data.tags
    assert_numbers_match(text, report)
    assert table(text, "Results")["Memory (parameters and buffers)"] == [
        "4.23 MB",
        "2.35 MB",
        f"{2345678 / 4234560:.3f}x",
    ]
    assert "on CPU a bitsandbytes model is slower than fp32 (2.3x slower at batch 1 here)" in text
    assert run_snippet(snippet(text)) in ("negative", "positive")


def test_finetune_card_without_source_measurements(tmp_path, tokenizer):
    path = save_model(tmp_path / "ft", tokenizer)
    report = base_report(path, "google-bert/bert-base-uncased", [])
    report["source"] = {"label": "base", "model": "google-bert/bert-base-uncased"}
    report["ratios"] = {}
    report["steps"] = [{"method": "finetune", "model": "google-bert/bert-base-uncased",
                        "settings": {"learning_rate": 2e-5, "epochs": 3.0, "seed": 42},
                        "parameters": 1058690, "size_bytes": report["result"]["size_bytes"]}]  # fmt: skip
    report["command"] = "hfcompress demo --output-dir runs/demo"
    (tmp_path / "data").mkdir()  # the demo's generated task lives beside its output
    write_report(path, report)
    text = write_model_card(path).read_text()
    data = ModelCard.load(path / "README.md").data
    assert data.base_model == "google-bert/bert-base-uncased" and data.base_model_relation == "finetune"
    assert not data.eval_results and not data.datasets and "glue" not in data.tags  # generated data is not GLUE
    assert "**not GLUE**" in text and not (path / CHART_NAME).exists() and CHART_NAME not in text
    rows = table(text, "Results")
    assert rows["Accuracy"][:2] == ["–", "0.9037"] and rows["CPU latency, batch 1"][0] == "–"
    assert_trustworthy(text)


def test_missing_report_is_one_sentence(tmp_path):
    with pytest.raises(UsageError, match="has no compression.json"):
        write_model_card(tmp_path)
