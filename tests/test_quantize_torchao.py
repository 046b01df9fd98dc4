"""torchao int8 / int4 weights on CPU: safetensors only, reload with plain from_pretrained, head kept, CLI reports."""

import json

import pytest
import torch

from hfcompress.errors import UsageError
from hfcompress.measure import memory_bytes
from hfcompress.quantization import quantize
from hfcompress.quantization.configs import TorchaoInt4WeightConfig, TorchaoInt8DynamicConfig, TorchaoInt8WeightConfig
from tests.conftest import run_cli, snapshot, tiny_lm

TEXTS = [("a gripping, beautifully acted film",), ("dull and far too long",), ("fine",)]


def _logits(model, batch):
    with torch.inference_mode():
        return model(**batch).logits.float()


@pytest.mark.parametrize("config", [TorchaoInt8WeightConfig(), TorchaoInt8DynamicConfig()])
def test_classifier_round_trip_keeps_the_head(config, quant_model_dir, tokenizer, tmp_path):
    from torchao.quantization import Int8Tensor
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / config.method
    info = quantize(quant_model_dir, config, out, check_texts=TEXTS)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json",
                                                     "tokenizer_config.json"]  # fmt: skip
    assert info["quantized_modules"] == 4 * 6 and info["kept_in_full_precision"] == ["bert.pooler.dense", "classifier"]
    assert info["checks"]["roundtrip_max_abs_diff"] == 0.0 and info["checks"]["quantized_max_abs_diff"] > 0
    quant = json.loads((out / "config.json").read_text())["quantization_config"]
    assert quant["quant_method"] == "torchao"

    reloaded = AutoModelForSequenceClassification.from_pretrained(out).eval()  # plain, no quantization_config
    assert isinstance(reloaded.bert.encoder.layer[0].attention.self.query.weight, Int8Tensor)
    assert type(reloaded.classifier.weight.data) is torch.Tensor
    fp32 = AutoModelForSequenceClassification.from_pretrained(quant_model_dir).eval()
    batch = tokenizer([t[0] for t in TEXTS], padding=True, return_tensors="pt")
    reference, quantized = _logits(fp32, batch), _logits(reloaded, batch)
    assert (quantized - reference).abs().max() <= 0.05 * reference.abs().max()
    assert memory_bytes(reloaded.bert.encoder) < 0.35 * memory_bytes(fp32.bert.encoder)  # int8 + scales, biases


def test_int4_on_cpu_keeps_layers_without_whole_groups(tmp_path, lm_tokenizer):
    source = tmp_path / "lm"
    tiny_lm("llama", len(lm_tokenizer), layers=2, intermediate_size=48).save_pretrained(source)  # down_proj in: 48
    lm_tokenizer.save_pretrained(source)
    out = tmp_path / "int4"
    info = quantize(source, TorchaoInt4WeightConfig(group_size=32), out)
    assert info["torchao_config"] == "IntxWeightOnlyConfig" and "one per byte" in info["note"]
    assert "model.layers.0.mlp.down_proj" in info["kept_in_full_precision"] and info["quantized_modules"] == 2 * 6
    assert info["checks"]["roundtrip_max_abs_diff"] == 0.0
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)
    assert type(model.model.layers[0].mlp.down_proj.weight.data) is torch.Tensor
    assert type(model.model.layers[0].mlp.up_proj.weight.data) is not torch.Tensor


def test_causal_lm_from_the_cli_then_evaluate(tmp_path, tiny_lm_dirs, text_files):
    out = tmp_path / "q8"
    data = ["--task", "causal-lm", "--validation-file", text_files["validation"], "--block-size", "32",
            "--latency-runs", "2"]  # fmt: skip
    result = run_cli("quantize", tiny_lm_dirs["qwen2"], "--method", "torchao-int8-weight", *data, "--output-dir", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Failed to load" not in result.stderr  # torchao's missing GPU kernels are not worth a warning on CPU
    report = json.loads((out / "compression.json").read_text())
    res, src = report["result"], report["source"]
    assert res["backend"] == "torchao" and report["steps"][-1]["settings"]["method"] == "torchao-int8-weight"
    assert res["metrics"]["perplexity"] == pytest.approx(src["metrics"]["perplexity"], rel=0.02)
    assert res["size_bytes"] < 0.8 * src["size_bytes"] and res["memory_bytes"] < src["memory_bytes"]
    assert "decode_per_token" in res["latency_ms"] and not list(out.glob("*.bin"))
    card = (out / "README.md").read_text()
    assert "torchao" in card and "pip install torchao" in card

    evaluated = tmp_path / "eval.json"
    result = run_cli("evaluate", out, *data, "--output-file", evaluated)
    assert result.returncode == 0, result.stderr[-2000:]
    again = json.loads(evaluated.read_text())
    assert again["metrics"]["perplexity"] == pytest.approx(res["metrics"]["perplexity"], rel=1e-6)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--method", "torchao-int4-weight", "--group-size", "48"], "group size must be 32, 64, 128 or 256"),
        (["--method", "torchao-int8-weight", "--group-size", "64"], "--group-size only applies to --method"),
    ],
)
def test_bad_torchao_settings(tmp_path, tiny_lm_dirs, extra, message, capsys):
    from hfcompress.cli.main import main

    out = tmp_path / "out"
    before = snapshot(tiny_lm_dirs["llama"])
    code = main(["quantize", str(tiny_lm_dirs["llama"]), *extra, "--output-dir", str(out)])
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err
    assert not out.exists() and snapshot(tiny_lm_dirs["llama"]) == before


def test_conv1d_models_have_nothing_for_torchao(tmp_path, tiny_lm_dirs):
    with pytest.raises(UsageError, match="nothing to quantize"):
        quantize(tiny_lm_dirs["gpt2"], TorchaoInt8WeightConfig(), tmp_path / "out")
    assert not (tmp_path / "out").exists()
