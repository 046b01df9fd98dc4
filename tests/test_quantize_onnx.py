"""ONNX Runtime int8: export checks, fusions, dynamic and static quantization, and the folder optimum loads."""

import sys

import numpy as np
import pytest
import torch
from conftest import tiny_classifier

from hfcompress.errors import HfcompressError, UsageError
from hfcompress.quantization import OnnxDynamicInt8Config, OnnxStaticInt8Config, OrtSequenceClassifier, quantize

TEXTS = [
    ("a gripping, beautifully acted film",),
    ("dull and far too long",),
    ("the cast is wonderful, but the script gives them nothing to do for most of the second hour",),
    ("fine",),
    ("one of the year's most charming surprises",),
    ("i wanted to leave after ten minutes",),
]
# Largest |logit difference| from fp32, as a share of the largest |fp32 logit|. Dynamic int8 scales activations per
# batch (padding included), so a row's logits move a little with the batch it is in; static int8 fixes the scales
# from 8 calibration examples. The real-model test in test_quantize_cli.py checks accuracy on SST-2 instead.
INT8_TOLERANCE = 0.1
STATIC_TOLERANCE = 0.25


def close_to_fp32(logits, expected, tolerance=INT8_TOLERANCE) -> bool:
    return np.abs(logits - expected).max() <= tolerance * np.abs(expected).max()


@pytest.fixture(scope="module")
def model_dir(quant_model_dir):
    return quant_model_dir


@pytest.fixture(scope="module")
def dynamic_dir(tmp_path_factory, model_dir):
    out = tmp_path_factory.mktemp("dynamic") / "int8"
    info = quantize(model_dir, OnnxDynamicInt8Config(), out, check_texts=TEXTS)
    return out, info


def fp32_and_onnx_logits(model_dir, onnx_dir, tokenizer, texts=TEXTS):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    clf = OrtSequenceClassifier.from_pretrained(onnx_dir)
    batch = tokenizer([t[0] for t in texts], padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = model(**batch).logits.numpy()
    return expected, clf(dict(batch))


def test_dynamic_int8_agrees_with_fp32(dynamic_dir, model_dir, tokenizer):
    out, info = dynamic_dir
    checks = info["checks"]
    assert checks["export_max_abs_diff"] <= 1e-4 and checks["optimized_max_abs_diff"] <= 1e-4
    assert checks["examples"] == len(TEXTS)
    assert info["fused_operators"]["Attention"] == 4  # every layer's attention fused by ONNX Runtime
    assert info["fused_operators"]["EmbedLayerNormalization"] == 1

    expected, logits = fp32_and_onnx_logits(model_dir, out, tokenizer)
    assert np.abs(expected).max() > 0.5 and np.ptp(expected[:, 0]) > 0.5  # logits vary: the check means something
    assert close_to_fp32(logits, expected)
    assert (logits.argmax(-1) == expected.argmax(-1)).all()
    assert checks["int8_max_abs_diff"] <= INT8_TOLERANCE * np.abs(expected).max()


def test_dynamic_axes_batch_and_sequence(dynamic_dir, model_dir, tokenizer):
    out, _ = dynamic_dir
    for texts in (TEXTS[:1], TEXTS[:3], TEXTS):  # batch 1, 3, 6 and three different padded lengths
        expected, logits = fp32_and_onnx_logits(model_dir, out, tokenizer, texts)
        assert logits.shape == (len(texts), 2)
        assert close_to_fp32(logits, expected)


def test_folder_is_laid_out_like_optimum(dynamic_dir, model_dir):
    import onnx
    from transformers import AutoConfig, AutoTokenizer

    out, _ = dynamic_dir
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.onnx", "tokenizer.json",
                                                     "tokenizer_config.json"]  # fmt: skip
    graph = onnx.load(str(out / "model.onnx")).graph
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    # optimum's BERT ONNX config: these names, batch and sequence axes symbolic; output "logits".
    assert inputs == {n: ["batch_size", "sequence_length"] for n in ("input_ids", "attention_mask", "token_type_ids")}
    assert [o.name for o in graph.output] == ["logits"]
    config = AutoConfig.from_pretrained(out)
    assert config.model_type == "bert" and config.num_labels == 2
    assert AutoTokenizer.from_pretrained(out)("hello")["input_ids"][0] == 101
    size = (out / "model.onnx").stat().st_size
    assert size < (model_dir / "model.safetensors").stat().st_size / 3.5  # int8 weights and embeddings


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_static_int8_calibrates_on_given_examples(method, tmp_path, model_dir, tokenizer):
    calibration = [(f"example number {i} of a review that is {'good' if i % 2 else 'bad'}",) for i in range(12)]
    config = OnnxStaticInt8Config(calibration_samples=8, calibration_method=method)
    info = quantize(model_dir, config, tmp_path / "static", calibration_texts=calibration, check_texts=TEXTS)
    assert info["calibration_samples"] == 8
    assert info["settings"]["calibration_method"] == method and info["settings"]["per_channel"] is True
    expected, logits = fp32_and_onnx_logits(model_dir, tmp_path / "static", tokenizer)
    assert close_to_fp32(logits, expected, STATIC_TOLERANCE)
    assert (logits.argmax(-1) == expected.argmax(-1)).mean() >= 5 / 6


def test_in_memory_model_and_other_architectures(tmp_path, tokenizer):
    # DistilBERT takes no token_type_ids; the graph's inputs follow the model, and the check still holds.
    model = tiny_classifier("distilbert", seed=2, initializer_range=0.2)
    info = quantize(model, OnnxDynamicInt8Config(), tmp_path / "d", tokenizer=tokenizer, check_texts=TEXTS)
    assert info["inputs"] == ["input_ids", "attention_mask"]
    assert info["checks"]["export_max_abs_diff"] <= 1e-4
    clf = OrtSequenceClassifier.from_pretrained(tmp_path / "d")
    batch = tokenizer(["good", "bad film"], padding=True, return_tensors="np")  # token_type_ids are dropped
    with torch.inference_mode():
        expected = model(**tokenizer(["good", "bad film"], padding=True, return_tensors="pt",
                                     return_token_type_ids=False)).logits.numpy()  # fmt: skip
    assert close_to_fp32(clf(dict(batch)), expected)
    with pytest.raises(UsageError, match="Pass the tokenizer"):
        quantize(model, OnnxDynamicInt8Config(), tmp_path / "e")


def test_latency_is_measured_like_pytorch(dynamic_dir):
    out, _ = dynamic_dir
    latency = OrtSequenceClassifier.from_pretrained(out, threads=1).latency_ms(batch_sizes=(1, 2), repeats=2)
    assert set(latency) == {"batch_1", "batch_2"} and all(ms > 0 for ms in latency.values())


def test_model_that_cannot_export_is_one_sentence(tmp_path, tokenizer):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    # FNet mixes tokens with a Fourier transform, which the ONNX exporter has no operator for.
    config = AutoConfig.for_model("fnet", vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                                  intermediate_size=64, num_labels=2)  # fmt: skip
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "fnet")
    tokenizer.save_pretrained(tmp_path / "fnet")
    with pytest.raises(UsageError, match=r"\(fnet\) cannot be exported to ONNX: .*fft") as err:
        quantize(tmp_path / "fnet", OnnxDynamicInt8Config(), tmp_path / "out")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_export_check_fails_loudly(tmp_path, model_dir):
    # A tolerance below float32 rounding cannot be met: the check must refuse and save nothing.
    with pytest.raises(HfcompressError, match="differ from PyTorch's by up to .* above the tolerance 1e-15"):
        quantize(model_dir, OnnxDynamicInt8Config(export_tolerance=1e-15), tmp_path / "out", check_texts=TEXTS)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(calibration_method="kl"),
            "Unknown calibration method 'kl'; choose one of: minmax, entropy, percentile.",
        ),
        (dict(calibration_samples=0), "--calibration-samples must be at least 1"),
        (dict(percentile=50.0), "--percentile must be between 90 and 100"),
        (dict(opset=9), "opset must be between 14 and 20"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        OnnxStaticInt8Config(**kwargs)


def test_static_without_calibration_data_is_refused(tmp_path, model_dir):
    with pytest.raises(UsageError, match="calibrates on the task's train split"):
        quantize(model_dir, OnnxStaticInt8Config(), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_backend_gives_install_hint(monkeypatch, tmp_path, model_dir):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` sees when not installed
    with pytest.raises(HfcompressError, match=r"pip install 'hfcompress\[onnx\]'"):
        quantize(model_dir, OnnxDynamicInt8Config(), tmp_path / "out")


def test_unknown_config_type_is_refused(tmp_path, model_dir):
    with pytest.raises(UsageError, match="Unknown quantization config dict"):
        quantize(model_dir, {"method": "int8"}, tmp_path / "out")
