"""Size and CPU latency of a model, measured the same way for every artifact."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .architecture import count_parameters


def weights_size_bytes(directory: str | Path) -> int:
    """Bytes of the weight files (safetensors, onnx and its external data) in a model folder."""
    directory = Path(directory)
    patterns = ("*.safetensors", "*.onnx", "*.onnx_data", "*.onnx.data")
    return sum(f.stat().st_size for pattern in patterns for f in directory.glob(pattern))


def saved_size_bytes(model) -> int:
    """On-disk size of `model` saved as safetensors (saved to a temporary folder and measured)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        return weights_size_bytes(tmp)


def memory_bytes(model) -> int:
    """Bytes of parameters and buffers as they sit in memory (tied weights once), counting the scales that
    bitsandbytes keeps beside its weights and the inner tensors (data, scales) of torchao's tensor subclasses."""
    total, seen = 0, set()
    for tensor in [*model.parameters(), *model.buffers()]:
        for part in [tensor, *_quant_tensors(tensor)]:
            if id(part) not in seen:
                seen.add(id(part))
                total += _tensor_bytes(part)
    return total


def _tensor_bytes(tensor) -> int:
    data = tensor.data if isinstance(tensor, torch.nn.Parameter) else tensor
    if type(data) is not torch.Tensor and hasattr(data, "__tensor_flatten__"):
        names, _ = data.__tensor_flatten__()
        return sum(_tensor_bytes(getattr(data, name)) for name in names)
    return data.numel() * data.element_size()


def _quant_tensors(tensor) -> list[torch.Tensor]:
    found = []
    scb = getattr(tensor, "SCB", None)
    if isinstance(scb, torch.Tensor):
        found.append(scb)
    state = getattr(tensor, "quant_state", None)
    while state is not None:
        found += [t for t in (getattr(state, "absmax", None), getattr(state, "code", None)) if t is not None]
        state = getattr(state, "state2", None) if getattr(state, "nested", False) else None
    return found


def median_latency_ms(run: Callable[[], object], warmup: int = 2, repeats: int = 10) -> float:
    """Median wall time of `run()` in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def dummy_inputs(config, batch_size: int, seq_len: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    # Ids from the low end of the vocabulary exist in every tokenizer; special ids don't matter for timing.
    high = min(getattr(config, "vocab_size", 1000), 1000)
    input_ids = torch.randint(100 if high > 200 else 0, high, (batch_size, seq_len), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def torch_latency_ms(
    model, batch_sizes=(1, 32), seq_len: int = 128, repeats: int = 10, warmup: int = 2
) -> dict[str, float]:
    """CPU latency of a PyTorch model's forward pass: {"batch_1": ms, "batch_32": ms}."""
    model.eval()
    device = next(model.parameters()).device
    results = {}
    for batch in batch_sizes:
        inputs = {k: v.to(device) for k, v in dummy_inputs(model.config, batch, seq_len).items()}

        def run(inputs=inputs):
            with torch.inference_mode():
                model(**inputs)

        # Fewer repeats for large batches keeps a BERT-base measurement under a minute on 2 cores.
        n = repeats if batch <= 8 else max(3, repeats // 2)
        results[f"batch_{batch}"] = round(median_latency_ms(run, warmup=warmup, repeats=n), 3)
    return results


def latency_setup(seq_len: int = 128, repeats: int = 10) -> dict:
    return {
        "device": "cpu",
        "seq_len": seq_len,
        "threads": torch.get_num_threads(),
        "statistic": f"median of {repeats} runs (batch >8: {max(3, repeats // 2)}) after 2 warm-up runs",
    }


def describe_model(model, directory: str | Path | None = None) -> dict:
    """Parameter count and on-disk size of a model (from `directory` when it holds the saved weights)."""
    size = weights_size_bytes(directory) if directory is not None else 0
    return {
        "parameters": count_parameters(model),
        "size_bytes": size or saved_size_bytes(model),
    }
