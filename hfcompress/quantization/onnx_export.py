"""Export a sequence classifier to ONNX and prove ONNX Runtime computes the same logits as PyTorch.

The TorchScript exporter (`dynamo=False`) with eager attention is used on purpose: on MiniLM its graph lets
ONNX Runtime's BERT optimizer fuse the embeddings, all 6 attention blocks and the GELUs, while in the
`dynamo=True` graph it fuses no attention block, and that int8 model ran slower in every measurement (see
`scripts/bench_quantize.py --compare-exporters`; figures in BENCHMARKS.md).
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import HfcompressError, UsageError

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "logits"
# Short texts of varied length, used to check an export when the caller has no task data at hand.
DEFAULT_CHECK_TEXTS = [
    ("a gripping, beautifully acted film",),
    ("the plot is thin and the jokes fall flat, but the cast seems to be having fun anyway",),
    ("dull",),
    ("it never quite decides what it wants to be, and by the last act neither do we",),
    ("one of the most charming and unexpectedly moving comedies of the year",),
    ("not worth the ticket",),
]


def load_for_export(model_dir: str | Path):
    """The fp32 classifier in `model_dir` with eager attention, the implementation the exporter traces best."""
    from transformers import AutoModelForSequenceClassification

    from ..factorization.loading import is_factorized, load_model

    try:
        if is_factorized(model_dir):  # low-rank layers: exported as two MatMuls each
            return load_model(model_dir, attn_implementation="eager", dtype=torch.float32)
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir, attn_implementation="eager", dtype=torch.float32
        )
    except (OSError, ValueError) as err:
        raise HfcompressError(f"Could not load '{model_dir}' for ONNX export: {_first_line(err)}") from err
    return model.eval()


def input_names(model, tokenizer) -> list[str]:
    """Inputs the graph takes: those the model's forward accepts and the tokenizer produces (ids always)."""
    accepted = set(inspect.signature(model.forward).parameters)
    produced = set(getattr(tokenizer, "model_input_names", MODEL_INPUTS)) | {"input_ids", "attention_mask"}
    names = [name for name in MODEL_INPUTS if name in accepted and name in produced]
    if "input_ids" not in names:
        raise UsageError(f"A '{model.config.model_type}' model takes no input_ids, so it cannot be exported here.")
    return names


class _LogitsOnly(torch.nn.Module):
    """Positional inputs in, logits out: the signature the exporter and ONNX Runtime see."""

    def __init__(self, model, names: list[str]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *inputs):
        return self.model(**dict(zip(self.names, inputs))).logits


def export_inputs(config, names: list[str], batch: int = 2, seq_len: int = 16) -> dict[str, torch.Tensor]:
    """Random ids with one padded row, so the traced graph keeps the attention-mask path."""
    generator = torch.Generator().manual_seed(0)
    high = min(getattr(config, "vocab_size", 1000), 1000)
    ids = torch.randint(100 if high > 200 else 0, high, (batch, seq_len), generator=generator)
    mask = torch.ones_like(ids)
    mask[-1, seq_len // 2 :] = 0
    values = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return {name: values[name] for name in names}


def export_onnx(model, names: list[str], path: str | Path, opset: int = 17, name: str = "the model") -> Path:
    """Write `model` to `path` with dynamic batch and sequence axes; a failure is one sentence."""
    path = Path(path)
    inputs = export_inputs(model.config, names)
    axes = {n: {0: "batch_size", 1: "sequence_length"} for n in names}
    axes[OUTPUT_NAME] = {0: "batch_size"}
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _LogitsOnly(model, names),
                tuple(inputs[n] for n in names),
                str(path),
                dynamo=False,
                input_names=names,
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes,
                opset_version=opset,
                do_constant_folding=True,
            )
    except Exception as err:  # the exporter raises many types; all mean the same thing to the user
        raise UsageError(
            f"'{name}' ({model.config.model_type}) cannot be exported to ONNX: {_first_line(err).rstrip('.')}."
        ) from err
    return path


def tokenize_batches(tokenizer, texts, names: list[str], max_length: int = 128, batch_size: int = 8):
    """Tokenized, padded batches (dicts of int64 tensors limited to `names`) from rows of 1 or 2 texts."""
    rows = [(row,) if isinstance(row, str) else tuple(row) for row in texts]
    batches = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        columns = list(zip(*chunk))
        encoded = tokenizer(*columns, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        batch = {n: encoded[n] for n in names if n in encoded}
        if "token_type_ids" in names and "token_type_ids" not in batch:
            batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
        batches.append(batch)
    return batches


def torch_logits(model, batches) -> list[np.ndarray]:
    with torch.inference_mode():
        return [model(**batch).logits.float().numpy() for batch in batches]


def max_difference(reference: list[np.ndarray], other: list[np.ndarray]) -> float:
    return float(max(np.abs(a - b).max() for a, b in zip(reference, other)))


def prediction_agreement(reference: list[np.ndarray], other: list[np.ndarray]) -> float:
    """Share of examples where both give the same class (for regression: 1 - relative error)."""
    ref = np.concatenate(reference)
    out = np.concatenate(other)
    if ref.shape[-1] == 1:  # regression: agreement is not defined, report 1 - relative error instead
        return round(float(1 - np.abs(ref - out).mean() / (np.abs(ref).mean() + 1e-12)), 4)
    return round(float((ref.argmax(-1) == out.argmax(-1)).mean()), 4)


def check_agreement(reference, other, tolerance: float, what: str) -> float:
    """Largest |logit difference|; raises when it is above `tolerance` (a broken export must not ship)."""
    diff = max_difference(reference, other)
    if not diff <= tolerance:
        raise HfcompressError(
            f"{what} differ from PyTorch's by up to {diff:.3g} on real inputs, above the tolerance {tolerance:g}; "
            "the ONNX graph does not compute the same function, so nothing was saved."
        )
    return diff


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def saved_model_checks(method: str, name: str, output_dir, reference, quantized, again, batches,
                       tolerance: float) -> dict:  # fmt: skip
    """Logits of fp32 `reference`, the `quantized` model and its saved-and-reloaded copy (`again`) compared: a
    reload that does not give the quantized model's logits (within `tolerance`) is an error."""
    roundtrip = max_difference(quantized, again)
    if not roundtrip <= tolerance:
        raise HfcompressError(
            f"The saved {method} model of '{name}' gives logits up to {roundtrip:.3g} away from the model "
            f"before saving (tolerance {tolerance:g}); the folder in '{output_dir}' should not be used."
        )
    return {
        "examples": sum(len(b["input_ids"]) for b in batches),
        "roundtrip_max_abs_diff": roundtrip,
        "roundtrip_tolerance": tolerance,
        "quantized_max_abs_diff": max_difference(reference, quantized),
        "quantized_prediction_agreement": prediction_agreement(reference, quantized),
    }
