"""Causal LMs through every verb, as real CLI subprocesses on tiny Llama / Qwen2 / GPT-2-shaped models."""

import json

import pytest

from tests.conftest import run_cli, snapshot


def _data(text_files, block=32):
    return ["--task", "causal-lm", "--train-file", text_files["train"], "--validation-file", text_files["validation"],
            "--block-size", str(block), "--latency-runs", "2"]  # fmt: skip


TRAIN = ["--num_train_epochs", "1", "--per_device_train_batch_size", "8", "--report_to", "none",
         "--learning_rate", "5e-3"]  # fmt: skip


def _report(folder):
    return json.loads((folder / "compression.json").read_text())


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, tiny_lm_dirs, text_files):
    out = tmp_path_factory.mktemp("clm") / "ft"
    result = run_cli("finetune", tiny_lm_dirs["llama"], *_data(text_files), *TRAIN, "--output-dir", out)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_finetune_reports_perplexity_latency_and_generations(finetuned, text_files):
    from transformers import AutoModelForCausalLM

    report = _report(finetuned)
    assert report["task"] == "causal-lm" and report["task_info"]["lower_is_better"] is True
    metrics = report["result"]["metrics"]
    assert metrics["window"] == 32 and metrics["stride"] == 16
    assert metrics["scored_tokens"] == metrics["tokens"] - 1
    assert report["result"]["score"] == metrics["perplexity"] < 512  # better than uniform over the vocabulary
    assert set(report["result"]["latency_ms"]) == {"prefill_batch_1", "decode_per_token"}
    assert len(report["result"]["generations"]) == 3
    assert AutoModelForCausalLM.from_pretrained(finetuned).config.architectures == ["LlamaForCausalLM"]
    card = (finetuned / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card and "AutoModelForCausalLM" in card
    assert "type: perplexity" in card and "nyu-mll/glue" not in card


@pytest.mark.parametrize("divergence", ["forward_kl", "jsd"])
def test_distill_keeps_teacher_layers(tmp_path, finetuned, text_files, divergence):
    out = tmp_path / "student"
    result = run_cli("distill", finetuned, "--student-layers", "0,3", "--divergence", divergence,
                     "--hidden-weight", "1", *_data(text_files), *TRAIN, "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = _report(out)
    step = report["steps"][-1]
    assert step["method"] == "distillation" and step["settings"]["divergence"] == divergence
    assert step["settings"]["layer_map"] == {"0": 0, "1": 3}
    assert report["result"]["parameters"] < report["source"]["parameters"]
    assert report["ratios"]["score"] == pytest.approx(report["result"]["score"] / report["source"]["score"], rel=1e-3)
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 2


def test_prune_unstructured_with_teacher_leaves_exact_zeros(tmp_path, finetuned, text_files):
    out = tmp_path / "sparse"
    result = run_cli("prune", finetuned, "--teacher", finetuned, "--sparsity", "0.5", "--update-frequency", "2",
                     *_data(text_files), *TRAIN, "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    sparsity = _report(out)["result"]["sparsity"]
    assert sparsity["global"] == pytest.approx(0.5, abs=1e-3)
    assert not any("lm_head" in name or "embed" in name for name in sparsity["per_layer"])
    assert all(name.startswith("model.layers.") for name in sparsity["per_layer"])


@pytest.mark.parametrize("family", ["gpt2", "qwen2"])
def test_prune_ffn_shrinks_the_mlp(tmp_path, tiny_lm_dirs, text_files, family):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "ffn"
    result = run_cli("prune", tiny_lm_dirs[family], "--structure", "ffn", "--ffn-size", "32", *_data(text_files),
                     *TRAIN, "--output-dir", out)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    model = AutoModelForCausalLM.from_pretrained(out)
    width = model.config.n_inner if family == "gpt2" else model.config.intermediate_size
    assert width == 32
    assert _report(out)["result"]["parameters"] < _report(out)["source"]["parameters"]


def test_evaluate_writes_window_and_bits_per_byte(tmp_path, finetuned, text_files):
    path = tmp_path / "eval.json"
    result = run_cli("evaluate", finetuned, "--task", "causal-lm", "--validation-file", text_files["validation"],
                     "--block-size", "16", "--stride", "8", "--latency-runs", "0", "--output-file", path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads(path.read_text())["metrics"]
    assert metrics["window"] == 16 and metrics["stride"] == 8 and metrics["bits_per_byte"] > 0
    assert metrics["bytes"] == len(text_files["validation"].read_bytes())
    assert "parameter memory (PyTorch)" in result.stdout


def test_quantize_bnb_int8_causal_lm(tmp_path, finetuned, text_files):
    pytest.importorskip("bitsandbytes")
    out = tmp_path / "int8"
    result = run_cli(
        "quantize",
        finetuned,
        "--method",
        "bnb-int8",
        "--task",
        "causal-lm",
        "--validation-file",
        text_files["validation"],
        "--block-size",
        "32",
        "--latency-runs",
        "0",
        "--output-dir",
        out,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = _report(out)
    assert report["result"]["memory_bytes"] < report["source"]["memory_bytes"]
    assert report["result"]["metrics"]["perplexity"] == pytest.approx(report["source"]["metrics"]["perplexity"],
                                                                      rel=0.05)  # fmt: skip
    assert "lm_head" in report["result"]["quantization"]["kept_in_full_precision"]


BAD = [
    (["--text-column", "body"], "jsonl", "has no column 'body'"),
    ([], "empty", "is empty"),
    (["--block-size", "1024"], None, "larger than the model's maximum context of 256 tokens"),
]


@pytest.mark.parametrize("extra,data,message", BAD)
def test_bad_inputs_are_one_sentence_and_write_nothing(tmp_path, tiny_lm_dirs, text_files, extra, data, message):
    train = text_files["train"]
    if data == "jsonl":
        train = tmp_path / "rows.jsonl"
        train.write_text('{"text": "a line"}\n{"text": "another"}\n')
    elif data == "empty":
        train = tmp_path / "empty.txt"
        train.write_text("")
    out = tmp_path / "out"
    args = ["--task", "causal-lm", "--train-file", train, "--validation-file", text_files["validation"], *extra]
    before = snapshot(tmp_path)
    result = run_cli("finetune", tiny_lm_dirs["llama"], *args, "--output-dir", out)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and snapshot(tmp_path) == before


def test_classification_task_on_a_causal_lm_is_refused(tmp_path, tiny_lm_dirs, tiny_glue_dir):
    result = run_cli("finetune", tiny_lm_dirs["llama"], "--task", "sst2", "--data-dir", tiny_glue_dir,
                     "--output-dir", tmp_path / "out")  # fmt: skip
    assert result.returncode == 2
    assert "is a causal language model (LlamaForCausalLM)" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_causal_lm_task_on_an_encoder_is_refused(tmp_path, tiny_teacher_dir, text_files):
    result = run_cli("evaluate", tiny_teacher_dir, "--task", "causal-lm", "--validation-file",
                     text_files["validation"])  # fmt: skip
    assert result.returncode == 2 and "causal" in result.stderr and "Traceback" not in result.stderr


def test_onnx_methods_refuse_a_causal_lm(tmp_path, finetuned):
    result = run_cli("quantize", finetuned, "--method", "onnx-int8-dynamic", "--output-dir", tmp_path / "q")
    assert result.returncode == 2 and "use --method bnb-int8, bnb-nf4 or a torchao method" in result.stderr
    assert not (tmp_path / "q").exists()
