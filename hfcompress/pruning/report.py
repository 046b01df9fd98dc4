"""Making pruning permanent, and measuring sparsity from the saved tensors (not from the schedule)."""

from __future__ import annotations

import zlib
from pathlib import Path

import torch
from safetensors import safe_open

from .callback import GradualMagnitudePruningCallback
from .ffn import shrink_feed_forwards
from .heads import shrink_heads

DENSE_NOTE = (
    "Unstructured and 2:4 sparsity leave a dense file the same size and a dense runtime no faster; the gain "
    "shows in the compressed size and needs a sparse kernel or runtime to become speed."
)


def make_permanent(callback: GradualMagnitudePruningCallback, model) -> dict:
    """Fold the final masks into the weights (FFN: drop the neurons). Returns what changed."""
    callback.apply_masks()
    if callback.config.structure == "ffn" and callback.unit_masks:
        before = callback.width
        after = shrink_feed_forwards(model, callback.unit_masks)
        return {"intermediate_size": [before, after]}
    if callback.config.structure == "heads" and callback.unit_masks:
        before = model.config.num_attention_heads
        heads, _ = shrink_heads(model, callback.unit_masks)
        return {"num_attention_heads": [before, heads]}
    return {}


def compressed_size(path: str | Path, level: int = 6) -> int:
    """Bytes of `path` after zlib (gzip's deflate) compression, streamed in 16 MiB chunks."""
    compressor, total = zlib.compressobj(level), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            total += len(compressor.compress(chunk))
    return total + len(compressor.flush())


def sparsity_report(weights_file: str | Path, module_names: list[str] | None = None) -> dict:
    """Fraction of exact zeros in the saved weights: over the pruned layers (global), each of them, and all."""
    per_layer, zeros, total, all_zeros, all_total = {}, 0, 0, 0, 0
    targets = {f"{name}.weight" for name in module_names or []}
    with safe_open(str(weights_file), framework="pt") as f:
        for key in f.keys():
            tensor = f.get_tensor(key)
            if not torch.is_floating_point(tensor):
                continue
            n_zero = int((tensor == 0).sum())
            all_zeros, all_total = all_zeros + n_zero, all_total + tensor.numel()
            if key in targets:
                per_layer[key] = round(n_zero / tensor.numel(), 6)
                zeros, total = zeros + n_zero, total + tensor.numel()
    return {
        "global": round(zeros / total, 6) if total else 0.0,
        "all_parameters": round(all_zeros / all_total, 6) if all_total else 0.0,
        "per_layer": per_layer,
    }
