"""`hfcompress quantize` and `hfcompress evaluate` on quantized folders, as a user runs them."""

import json

import pytest
from conftest import SHARED_GLUE, run_cli, snapshot, tiny_classifier

from hfcompress.cli.main import main


def assert_no_pickles(path):
    pickled = [p.name for p in path.rglob("*") if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".ckpt"}]
    assert not pickled, pickled


def test_onnx_dynamic_end_to_end(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    out = tmp_path / "int8"
    result = run_cli("quantize", tiny_teacher_dir, "--method", "onnx-int8-dynamic", "--task", "sst2", "--data-dir",
                     tiny_glue_dir, "--latency-runs", "1", "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert {"model.onnx", "config.json", "tokenizer.json", "compression.json"} <= {p.name for p in out.iterdir()}
    assert_no_pickles(out)

    report = json.loads((out / "compression.json").read_text())
    src, res, ratios = report["source"], report["result"], report["ratios"]
    assert report["task"] == "sst2" and report["command"].startswith("hfcompress quantize ")
    assert src["backend"] == "transformers" and res["backend"] == "onnxruntime"
    assert res["label"] == "onnx-int8-dynamic" and 0.0 <= res["metrics"]["accuracy"] <= 1.0
    assert res["size_bytes"] == (out / "model.onnx").stat().st_size
    assert src["size_bytes"] == (tiny_teacher_dir / "model.safetensors").stat().st_size
    assert ratios["size_bytes"] < 0.3 and ratios["memory_bytes"] < 0.3
    assert res["parameters"] == src["parameters"]
    assert set(res["latency_ms"]) == set(src["latency_ms"]) == {"batch_1", "batch_32"}
    assert report["latency_setup"]["threads"] >= 1
    quantization = res["quantization"]
    assert quantization["checks"]["export_max_abs_diff"] <= 1e-4
    assert quantization["checks"]["examples"] == 32  # the dev rows: real inputs
    assert quantization["fused_operators"]["Attention"] == 4
    assert report["steps"][-1]["method"] == "quantization"
    assert report["steps"][-1]["settings"]["method"] == "onnx-int8-dynamic"
    for text in ("GLUE score", "latency batch 1", "parameter memory", "ONNX Runtime fused: 1 EmbedLayerNormalization"):
        assert text in result.stdout

    # `hfcompress evaluate` runs the ONNX folder and reproduces the accuracy in compression.json.
    eval_json = tmp_path / "eval.json"
    result = run_cli("evaluate", out, "--task", "sst2", "--data-dir", tiny_glue_dir, "--latency-runs", "0",
                     "--output-file", eval_json)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads(eval_json.read_text())
    assert evaluated["metrics"] == res["metrics"] and evaluated["backend"] == "onnxruntime"
    assert evaluated["parameters"] == res["parameters"]


def test_onnx_static_with_calibration_options(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    out = tmp_path / "static"
    result = run_cli("quantize", tiny_teacher_dir, "--method", "onnx-int8-static", "--task", "sst2", "--data-dir",
                     tiny_glue_dir, "--calibration-samples", "16", "--calibration-method", "percentile",
                     "--latency-runs", "0", "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "compression.json").read_text())
    settings = report["steps"][-1]["settings"]
    assert settings["calibration_samples"] == 16 and settings["calibration_method"] == "percentile"
    assert settings["per_channel"] is True
    assert "latency_ms" not in report["result"] and report["latency_setup"] is None
    assert report["result"]["quantization"]["checks"]["int8_prediction_agreement"] >= 0.9


def test_bnb_int8_and_evaluate(tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys):
    out = tmp_path / "int8"
    result = run_cli("quantize", tiny_teacher_dir, "--method", "bnb-int8", "--task", "sst2", "--data-dir",
                     tiny_glue_dir, "--latency-runs", "0", "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bitsandbytes buys memory, not CPU speed" in result.stdout
    assert "MatMul8bitLt" not in result.stdout + result.stderr  # per-call warnings are silenced
    report = json.loads((out / "compression.json").read_text())
    res = report["result"]
    assert res["backend"] == "bitsandbytes" and res["memory_bytes"] < report["source"]["memory_bytes"]
    assert res["quantization"]["kept_in_full_precision"] == ["bert.pooler.dense", "classifier"]
    assert json.loads((out / "config.json").read_text())["quantization_config"]["load_in_8bit"] is True
    assert_no_pickles(out)

    eval_json = tmp_path / "eval.json"
    code = main(["evaluate", str(out), "--task", "sst2", "--data-dir", str(tiny_glue_dir), "--latency-runs", "0",
                 "--output-file", str(eval_json)])  # fmt: skip
    assert code == 0
    evaluated = json.loads(eval_json.read_text())
    assert evaluated["metrics"] == res["metrics"] and evaluated["backend"] == "bitsandbytes"
    assert "parameter memory (bitsandbytes)" in capsys.readouterr().out


def test_bnb_nf4_without_a_task(tmp_path, tiny_teacher_dir, capsys):
    out = tmp_path / "nf4"
    code = main(["quantize", str(tiny_teacher_dir), "--method", "bnb-nf4", "--double-quant", "false",
                 "--latency-runs", "0", "--output-dir", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr().err[-3000:]
    assert "(no task)" in capsys.readouterr().out
    report = json.loads((out / "compression.json").read_text())
    assert report["task"] is None and "metrics" not in report["result"]
    assert report["steps"][-1]["settings"]["double_quant"] is False
    assert report["ratios"]["memory_bytes"] < 1.0
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config["bnb_4bit_quant_type"] == "nf4" and config["bnb_4bit_use_double_quant"] is False


def test_unknown_method_is_one_sentence(tmp_path, tiny_teacher_dir):
    out = tmp_path / "out"
    result = run_cli("quantize", tiny_teacher_dir, "--method", "gptq", "--output-dir", out)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [
        "hfcompress quantize: error: Unknown quantization method 'gptq'; choose one of: onnx-int8-dynamic, "
        "onnx-int8-static, bnb-int8, bnb-nf4, torchao-int8-weight, torchao-int8-dynamic, torchao-int4-weight."
    ]
    assert not out.exists()


def _bad_inputs(tmp_path, tiny_teacher_dir, tiny_glue_dir):
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    from hfcompress.data import write_sentiment_task

    tokenizer_files = [p for p in tiny_teacher_dir.iterdir() if p.name.startswith("tokenizer")]
    base, fnet, no_layers = tmp_path / "base", tmp_path / "fnet", tmp_path / "no-layers"
    AutoModel.from_config(AutoConfig.from_pretrained(tiny_teacher_dir)).save_pretrained(base)  # no head
    config = AutoConfig.for_model("fnet", vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                                  intermediate_size=64, num_labels=2)  # fmt: skip
    AutoModelForSequenceClassification.from_config(config).save_pretrained(fnet)
    tiny_classifier("bert", layers=0, hidden=64).save_pretrained(no_layers)
    for folder in (base, fnet, no_layers):
        for file in tokenizer_files:
            (folder / file.name).write_bytes(file.read_bytes())
    no_train = write_sentiment_task(tmp_path / "glue-dev-only", n_train=4, n_dev=8, seed=0)
    (no_train / "sst2" / "train.tsv").unlink()
    data = ["--task", "sst2", "--data-dir", str(tiny_glue_dir)]
    model = str(tiny_teacher_dir)
    return {
        "static without data": (
            [model, "--method", "onnx-int8-static"],
            "onnx-int8-static calibrates on examples of a task's train split; pass --task and --data-dir",
        ),
        "static without a train split": (
            [model, "--method", "onnx-int8-static", "--task", "sst2", "--data-dir", str(no_train)],
            "calibrates on sst2's train split, which this data lacks",
        ),
        "option of another method": (
            [model, "--method", "onnx-int8-dynamic", "--calibration-samples", "8"],
            "--calibration-samples only applies to --method onnx-int8-static, not onnx-int8-dynamic.",
        ),
        "data without a task": ([model, "--method", "bnb-int8", "--data-dir", str(tiny_glue_dir)], "without --task"),
        "model that cannot export": (
            [str(fnet), "--method", "onnx-int8-dynamic", *data],
            "(fnet) cannot be exported to ONNX",
        ),  # fmt: skip
        "nf4 without linear layers": ([str(no_layers), "--method", "bnb-nf4"], "has no Linear layers outside"),
        "untrained head": ([str(base), "--method", "onnx-int8-dynamic", *data], "has no trained classification head"),
        "bad calibration method": (
            [model, "--method", "onnx-int8-static", "--calibration-method", "kl", *data],
            "Unknown calibration method 'kl'",
        ),
        "output is the model folder": (
            [model, "--method", "onnx-int8-dynamic", "--overwrite_output_dir"],
            "is or contains the input model",
        ),
    }


@pytest.mark.parametrize(
    "case",
    ["static without data", "static without a train split", "option of another method", "data without a task",
     "model that cannot export", "nf4 without linear layers", "untrained head", "bad calibration method",
     "output is the model folder"],
)  # fmt: skip
def test_bad_input_fails_fast_and_writes_nothing(case, tmp_path, tiny_teacher_dir, tiny_glue_dir, capsys):
    args, message = _bad_inputs(tmp_path, tiny_teacher_dir, tiny_glue_dir)[case]
    out = tiny_teacher_dir if case == "output is the model folder" else tmp_path / "out"
    before = snapshot(tiny_teacher_dir)
    code = main(["quantize", *args, "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("hfcompress quantize: error:")]
    assert len(errors) == 1 and message in errors[0], err
    assert not (tmp_path / "out").exists()
    assert snapshot(tiny_teacher_dir) == before


def test_existing_output_dir_is_refused(tmp_path, tiny_teacher_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code = main(["quantize", str(tiny_teacher_dir), "--method", "onnx-int8-dynamic", "--output-dir", str(out)])
    assert code == 2 and [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.slow
def test_every_method_on_real_sst2_with_minilm(tmp_path, minilm_path):
    """MiniLM fine-tuned briefly on real SST-2, then each method: accuracy and outputs close to fp32."""
    from hfcompress.arguments import DataArguments, FinetuneArguments, ModelArguments
    from hfcompress.finetune import run_finetune
    from hfcompress.quantization.run import QuantizeArguments, QuantizeDataArguments, run_quantize

    teacher = tmp_path / "teacher"
    run_finetune(
        ModelArguments(model=str(minilm_path), max_seq_length=64),
        DataArguments(task="sst2", data_dir=str(SHARED_GLUE), max_train_samples=320, max_eval_samples=32,
                      latency_runs=0),
        FinetuneArguments(output_dir=str(teacher), max_steps=20, per_device_train_batch_size=16,
                          learning_rate=2e-4, report_to="none", disable_tqdm=True, seed=0),
    )  # fmt: skip
    reports = {}
    for method in ("onnx-int8-dynamic", "onnx-int8-static", "bnb-int8", "bnb-nf4"):
        data = QuantizeDataArguments(task="sst2", data_dir=str(SHARED_GLUE), max_eval_samples=32, latency_runs=0)
        extra = {"calibration_samples": 16} if method == "onnx-int8-static" else {}
        args = QuantizeArguments(method=method, output_dir=str(tmp_path / method), **extra)
        model = ModelArguments(model=str(teacher), max_seq_length=64)
        reports[method] = run_quantize(model, data, args, f"test {method}")

    fp32 = reports["onnx-int8-dynamic"]["source"]["metrics"]["accuracy"]
    assert fp32 > 0.6  # the head learned something, so agreement below is meaningful
    for method, report in reports.items():
        res = report["result"]
        # A head trained for 20 steps leaves many rows near the boundary: allow 4 of 32 dev rows to change.
        assert abs(res["metrics"]["accuracy"] - fp32) <= 4 / 32, method
        checks = res["quantization"]["checks"]
        assert checks.get("int8_prediction_agreement", checks.get("quantized_prediction_agreement")) >= 0.85, method
        assert [s["method"] for s in report["steps"]] == ["finetune", "quantization"]
        assert "origin" not in report  # fine-tuning is not compression: the fp32 source is where it starts
    dynamic = reports["onnx-int8-dynamic"]
    assert dynamic["result"]["quantization"]["fused_operators"]["Attention"] == 6  # every block of MiniLM fused
    assert dynamic["result"]["quantization"]["checks"]["export_max_abs_diff"] <= 1e-4
    assert dynamic["ratios"]["size_bytes"] < 1 / 3.5  # int8 weights and embeddings vs the fp32 safetensors
    assert reports["onnx-int8-static"]["ratios"]["size_bytes"] < 0.5
    assert reports["bnb-nf4"]["result"]["memory_bytes"] < reports["bnb-int8"]["result"]["memory_bytes"]
    assert reports["bnb-int8"]["ratios"]["memory_bytes"] < 0.8
