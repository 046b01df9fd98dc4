"""`hfcompress prune` and the plain-transformers script, run as a user would."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT, run_cli, tiny_config
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

FLAGS = ["--task", "sst2", "--per-device-train-batch-size", "8", "--learning-rate", "1e-3", "--latency-runs", "1"]


def test_prune_unstructured_while_distilling(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    out = tmp_path / "pruned"
    result = run_cli("prune", tiny_teacher_dir, "--teacher", tiny_teacher_dir, "--data-dir", tiny_glue_dir,
                     "--sparsity", "0.8", "--max-steps", "8", "--end-step", "6", "--update-frequency", "2",
                     "--output-dir", out, *FLAGS)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "compression.json").read_text())
    sparsity = report["result"]["sparsity"]
    assert sparsity["global"] == pytest.approx(0.8, abs=1e-3)
    assert len(sparsity["per_layer"]) == 24 and all(key.endswith(".weight") for key in sparsity["per_layer"])
    assert sparsity["compressed_size_bytes"] < report["result"]["size_bytes"]
    assert "no faster" in sparsity["note"]
    step = report["steps"][0]
    assert step["method"] == "pruning" and step["settings"]["teacher"] == str(tiny_teacher_dir)
    assert step["settings"]["teacher_placement"] == {"device": "cpu", "dtype": "float32"}  # auto keeps a CPU teacher
    assert [s for s, _ in step["settings"]["schedule_history"]] == [0, 2, 4, 6]

    # Measured from the saved tensors: the file itself has the zeros, and no extra keys.
    tensors = load_file(out / "model.safetensors")
    weight = tensors["bert.encoder.layer.0.attention.self.query.weight"]
    assert float((weight == 0).float().mean()) == pytest.approx(sparsity["per_layer"][
        "bert.encoder.layer.0.attention.self.query.weight"])  # fmt: skip
    assert not any("mask" in key or "orig" in key for key in tensors)
    assert AutoModelForSequenceClassification.from_pretrained(out).config.num_hidden_layers == 4
    assert "sparsity (pruned layers)" in result.stdout


def test_second_stage_and_quantization_carry_the_lineage(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    first, second, int8 = tmp_path / "stage1", tmp_path / "stage2", tmp_path / "int8"
    result = run_cli("prune", tiny_teacher_dir, "--data-dir", tiny_glue_dir, "--sparsity", "0.5",
                     "--max-steps", "4", "--end-step", "2", "--update-frequency", "2", "--output-dir", first,
                     *FLAGS)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_cli("prune", first, "--data-dir", tiny_glue_dir, "--sparsity", "0.8", "--initial-sparsity", "0.5",
                     "--max-steps", "4", "--end-step", "2", "--update-frequency", "2", "--output-dir", second,
                     *FLAGS)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    stage1 = json.loads((first / "compression.json").read_text())
    stage2 = json.loads((second / "compression.json").read_text())
    assert "origin" not in stage1
    assert [s["model"] for s in stage2["steps"]] == [str(tiny_teacher_dir), str(first)]
    assert [s["sparsity"] for s in stage2["steps"]] == pytest.approx([0.5, 0.8], abs=1e-3)
    assert stage2["source"]["model"] == str(first)  # ratios: against the stage's own input
    assert stage2["origin"]["model"] == str(tiny_teacher_dir)
    assert stage2["origin"]["score"] == stage1["source"]["score"]
    assert stage2["ratios_to_origin"]["score"] == round(stage2["result"]["score"] / stage1["source"]["score"], 4)
    assert not any(key.startswith("speedup") for key in stage2["ratios_to_origin"])
    assert "Against the start of the lineage" in result.stdout
    assert "where its lineage starts" in (second / "README.md").read_text()

    result = run_cli("quantize", second, "--method", "onnx-int8-dynamic", "--task", "sst2", "--data-dir",
                     tiny_glue_dir, "--latency-runs", "0", "--output-dir", int8)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((int8 / "compression.json").read_text())
    assert [s["method"] for s in report["steps"]] == ["pruning", "pruning", "quantization"]
    assert report["origin"] == stage2["origin"]
    assert report["ratios_to_origin"]["size_bytes"] == round(
        report["result"]["size_bytes"] / stage1["source"]["size_bytes"], 4
    )


def test_prune_ffn_makes_a_smaller_model(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    out = tmp_path / "ffn"
    result = run_cli("prune", tiny_teacher_dir, "--data-dir", tiny_glue_dir, "--structure", "ffn",
                     "--ffn-size", "32", "--max-steps", "6", "--end-step", "4", "--update-frequency", "2",
                     "--output-dir", out, *FLAGS)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "compression.json").read_text())
    assert report["result"]["sparsity"]["intermediate_size"] == [64, 32]
    assert report["result"]["parameters"] < report["source"]["parameters"]
    assert report["ratios"]["size_bytes"] < 1.0
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.intermediate_size == 32
    assert model.bert.encoder.layer[3].intermediate.dense.weight.shape == (32, 32)


def test_plain_transformers_script_with_the_callback(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    out = tmp_path / "script"
    result = subprocess.run(
        [sys.executable, ROOT / "scripts" / "prune_glue.py", "--model", tiny_teacher_dir, "--task", "sst2",
         "--data-dir", tiny_glue_dir, "--output-dir", out, "--sparsity", "0.6", "--max-steps", "10"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sparsity of the pruned layers: 0.600" in result.stdout
    tensors = load_file(out / "model.safetensors")
    linear = [v for k, v in tensors.items() if ".encoder.layer." in k and k.endswith("dense.weight")]
    zeros = sum(int((t == 0).sum()) for t in linear) / sum(t.numel() for t in linear)
    assert zeros > 0.5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sparsity", "1.0"], "Sparsity must be in [0, 1), got 1.0."),
        (
            ["--sparsity", "0.5", "--end-step", "100", "--max-steps", "4"],
            "--end-step 100 is past the run's last step (4)",
        ),
        (["--sparsity", "0.5", "--start-step", "5", "--end-step", "3"], "--end-step 3 must come after --start-step 5"),
        (["--structure", "ffn", "--ffn-size", "128", "--max-steps", "4"], "--ffn-size 128 must be between 1"),
        (["--structure", "2:4", "--sparsity", "0.5", "--max-steps", "4"], "multiples of 4"),
        (["--structure", "heads", "--sparsity", "0.5", "--max-steps", "4"], "use --structure ffn"),
    ],
)
def test_impossible_settings_fail_before_training(args, message, tmp_path, tokenizer, tiny_teacher_dir,
                                                  tiny_glue_dir):  # fmt: skip
    model = tiny_teacher_dir
    if "2:4" in args:  # hidden size 30 (3 heads of 10): input widths that are not multiples of 4
        model = tmp_path / "odd"
        AutoModelForSequenceClassification.from_config(
            tiny_config("bert", hidden=30, num_attention_heads=3)
        ).save_pretrained(model)
        tokenizer.save_pretrained(model)
    out = tmp_path / "out"
    result = run_cli("prune", model, "--data-dir", tiny_glue_dir, *args, "--output-dir", out, *FLAGS)
    assert result.returncode == 2
    assert message in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and not out.exists()
