"""bitsandbytes LLM.int8() and NF4 on CPU: full-precision head, save/reload round trip, memory, bad input."""

import sys

import numpy as np
import pytest
import torch
from conftest import tiny_classifier

from hfcompress.errors import HfcompressError, UsageError
from hfcompress.measure import memory_bytes
from hfcompress.quantization import BnbInt8Config, BnbNf4Config, quantize
from hfcompress.quantization.bnb import load_bnb

TEXTS = [("a gripping, beautifully acted film",), ("dull and far too long",), ("fine",),
         ("the cast is wonderful, but the script gives them nothing to do for most of the second hour",)]  # fmt: skip
# Largest |logit difference| from fp32 as a share of the largest |fp32 logit|, on a random model with large weights;
# 4-bit weights move its logits a lot more than int8 does. The real-model test checks accuracy on SST-2 instead.
TOLERANCE = {"bnb-int8": 0.05, "bnb-nf4": 0.4}


@pytest.fixture(scope="module")
def model_dir(quant_model_dir):
    return quant_model_dir


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, model_dir):
    """Both methods quantized once: {method: (folder, what quantize returned)}."""
    out = tmp_path_factory.mktemp("bnb")
    return {c.method: (out / c.method, quantize(model_dir, c, out / c.method, check_texts=TEXTS))
            for c in (BnbInt8Config(), BnbNf4Config())}  # fmt: skip


def logits(model, tokenizer, texts=TEXTS) -> np.ndarray:
    batch = tokenizer([t[0] for t in texts], padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model(**batch).logits.float().numpy()


@pytest.mark.parametrize("method", ["bnb-int8", "bnb-nf4"])
def test_quantize_save_and_reload(method, quantized, model_dir, tokenizer):
    import bitsandbytes as bnb
    from transformers import AutoModelForSequenceClassification

    out, info = quantized[method]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json",
                                                     "tokenizer_config.json"]  # fmt: skip
    assert info["device"] == "cpu" and info["quantized_modules"] == 4 * 6  # q, k, v, out, up, down per layer
    assert info["kept_in_full_precision"] == ["bert.pooler.dense", "classifier"]
    assert info["checks"]["roundtrip_max_abs_diff"] <= info["checks"]["roundtrip_tolerance"] == 1e-4

    fp32 = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    reloaded = load_bnb(out)
    layer = bnb.nn.Linear8bitLt if method == "bnb-int8" else bnb.nn.Linear4bit
    assert isinstance(reloaded.bert.encoder.layer[0].attention.self.query, layer)
    assert type(reloaded.classifier) is torch.nn.Linear and reloaded.classifier.weight.dtype == torch.float32

    # Loading the folder the plain transformers way gives the same logits: the round trip is lossless.
    plain = AutoModelForSequenceClassification.from_pretrained(out, device_map="cpu").eval()
    expected = logits(fp32, tokenizer)
    assert np.abs(expected).max() > 0.5
    got = logits(reloaded, tokenizer)
    np.testing.assert_allclose(logits(plain, tokenizer), got, atol=1e-5)
    assert np.abs(got - expected).max() <= TOLERANCE[method] * np.abs(expected).max()
    assert (got.argmax(-1) == expected.argmax(-1)).all()
    assert memory_bytes(reloaded) < memory_bytes(fp32)


def test_memory_counts_packed_weights_and_scales(quantized, model_dir):
    from transformers import AutoModelForSequenceClassification

    fp32 = memory_bytes(AutoModelForSequenceClassification.from_pretrained(model_dir))
    int8, nf4 = (memory_bytes(load_bnb(quantized[m][0])) for m in ("bnb-int8", "bnb-nf4"))
    # The quantized Linear weights shrink 4x (int8) and ~8x (NF4), less their scales; embeddings and head stay fp32.
    linear_bytes = 4 * (4 * 64 * 64 + 2 * 64 * 128) * 4
    assert fp32 - int8 == pytest.approx(linear_bytes * 3 / 4, rel=0.05)
    assert linear_bytes * 0.8 < fp32 - nf4 < linear_bytes * 7 / 8  # block scales and code tables cost a little
    assert nf4 < int8 < fp32


def test_layers_the_cpu_kernel_cannot_pack_stay_in_full_precision(tmp_path, tokenizer):
    # hidden 32: only the FFN output layers (64 -> 32) fit the CPU 4-bit kernel's 64-input blocks.
    model = tiny_classifier("bert", seed=0, layers=2, initializer_range=0.2)
    info = quantize(model, BnbNf4Config(), tmp_path / "nf4", tokenizer=tokenizer, check_texts=TEXTS)
    assert info["quantized_modules"] == 2
    assert "bert.encoder.layer.0.attention.self.query" in info["unsupported_shape"]
    assert info["checks"]["roundtrip_max_abs_diff"] <= 1e-4


def test_extra_skip_modules_are_kept(tmp_path, model_dir):
    info = quantize(model_dir, BnbInt8Config(skip_modules=["bert.encoder.layer.0"]), tmp_path / "int8")
    assert info["quantized_modules"] == 3 * 6
    assert "bert.encoder.layer.0.output.dense" in info["kept_in_full_precision"]


def test_nf4_on_a_model_without_linear_layers_is_refused(tmp_path, tokenizer):
    # No transformer layers: only the pooler and classifier are Linear, and both stay in full precision.
    model = tiny_classifier("bert", seed=0, layers=0, hidden=64)
    with pytest.raises(UsageError, match="has no Linear layers outside its classification head"):
        quantize(model, BnbNf4Config(), tmp_path / "out", tokenizer=tokenizer)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: BnbNf4Config(quant_type="int4"), "Unknown 4-bit type 'int4'; choose nf4 or fp4."),
        (lambda: BnbNf4Config(compute_dtype="float8"), "Unknown compute dtype 'float8'"),
        (lambda: BnbInt8Config(threshold=-1), "threshold must be 0 or more"),
    ],
)
def test_bad_settings_are_refused(make, message):
    with pytest.raises(UsageError, match=message):
        make()


def test_missing_backend_gives_install_hint(monkeypatch, tmp_path, model_dir):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # what `import bitsandbytes` sees when not installed
    with pytest.raises(HfcompressError, match=r"pip install 'hfcompress\[bnb\]'"):
        quantize(model_dir, BnbNf4Config(), tmp_path / "out")
    assert not (tmp_path / "out").exists()
