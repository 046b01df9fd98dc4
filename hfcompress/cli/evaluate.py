"""hfcompress evaluate MODEL --task sst2 [--data-dir DIR]"""

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..arguments import DataArguments, ModelArguments
from ..errors import UsageError
from ..models import load_config, load_for_task, load_tokenizer
from ..pipeline import as_task, latency_info, load_data, measure
from ..quantization.quantize import quantized_backend
from .common import parse_dataclasses

DESCRIPTION = (
    "Evaluate a model on the task's evaluation data: a GLUE dev set with the task's official metric, any "
    "classification data (accuracy, macro-F1), or a causal LM's strided perplexity and bits per byte; plus size, "
    "memory and latency."
)


@dataclass
class EvaluateArguments:
    output_file: str | None = field(default=None, metadata={"help": "Also write the results to this JSON file."})


TYPES = (ModelArguments, DataArguments, EvaluateArguments)


def parse(argv: list[str]):
    return parse_dataclasses(argv, TYPES, "evaluate", DESCRIPTION, positional="model")


def run(argv: list[str]) -> int:
    model_args, data_args, eval_args = parse(argv)
    task = as_task(data_args)
    if eval_args.output_file and Path(eval_args.output_file).exists():
        raise UsageError(f"Output file '{eval_args.output_file}' already exists; choose another name.")
    if eval_args.output_file:
        parent = Path(eval_args.output_file).absolute().parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise UsageError(f"Cannot write '{eval_args.output_file}': '{parent}' is not a writable folder.")
    config = load_config(model_args.model, model_args.trust_remote_code, revision=model_args.revision)
    task.check_config(config, model_args.model)
    if task.kind != "causal-lm":
        from ..models import check_max_length

        check_max_length(config, model_args.max_seq_length, model_args.model)
    backend = quantized_backend(model_args.model) if Path(model_args.model).is_dir() else None
    if not backend:
        task.check_trained(config, model_args.model)
    from ..models import other_task_labels

    other = other_task_labels(config, getattr(task, "label_names", None))
    if other:
        print(f"Warning: '{model_args.model}' was trained with the labels {', '.join(other)}, not {task.name}'s "
              f"({', '.join(task.label_names)}); its predictions are scored as {task.name}'s labels.",
              file=sys.stderr)  # fmt: skip
    splits = load_data(task, need_train=False, train=False)
    tokenizer = load_tokenizer(model_args.model, model_args.trust_remote_code, model_args.revision)
    splits = task.prepare(splits, tokenizer, config)
    if backend:
        entry = _measure_quantized(model_args, task, splits, tokenizer, backend, data_args.latency_runs)
    else:
        entry = _measure_fp(model_args, task, splits, tokenizer, data_args.latency_runs)
    result = {"task": task.name, "task_info": task.info(), **entry,
              "latency_setup": latency_info(data_args.latency_runs, task)}  # fmt: skip
    _print(result)
    if eval_args.output_file:
        Path(eval_args.output_file).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _measure_fp(model_args, task, splits, tokenizer, latency_runs: int) -> dict:
    from ..training import check_finite

    model, _ = load_for_task(model_args.model, task, model_args)
    check_finite(model, model_args.model)
    directory = model_args.model if Path(model_args.model).is_dir() else None
    return measure(
        model,
        tokenizer,
        task,
        splits,
        "model",
        model_args.model,
        directory,
        latency_runs,
        model_args.max_seq_length,
    )


def _measure_quantized(model_args, task, splits, tokenizer, backend: str, latency_runs: int) -> dict:
    """An ONNX Runtime (model.onnx) or bitsandbytes folder written by `hfcompress quantize`, or compatible."""
    from ..quantization.run import measure_quantized
    from ..report import read_report

    config = load_config(model_args.model, trust_remote_code=model_args.trust_remote_code)
    num_labels = getattr(task, "num_labels", None)
    if num_labels and task.kind != "causal-lm" and config.num_labels != num_labels:
        raise UsageError(
            f"'{model_args.model}' has a {config.num_labels}-label head, but {task.name} needs {num_labels}."
        )
    entry = measure_quantized(model_args.model, backend, "model", tokenizer, task, splits, model_args.max_seq_length,
                              latency_runs, model_args.trust_remote_code)  # fmt: skip
    report = read_report(model_args.model) or {}
    parameters = (report.get("result") or {}).get("parameters")
    return {**entry, "parameters": parameters or 0}


def _print(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['model']} on {result['task']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in result["metrics"].items():
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else f"{value:,}")
    if result.get("parameters"):
        table.add_row("parameters", f"{result['parameters'] / 1e6:.2f} M")
    table.add_row("size on disk", f"{result['size_bytes'] / 1e6:.1f} MB")
    if result.get("memory_bytes"):
        backend = result.get("backend", "PyTorch")
        table.add_row(f"parameter memory ({backend})", f"{result['memory_bytes'] / 1e6:.1f} MB")
    device = ((result.get("latency_setup") or {}).get("device") or "cpu").upper()
    for batch, ms in (result.get("latency_ms") or {}).items():
        if batch == "decode_per_token":
            table.add_row(f"{device} decode, tokens/s (KV cache)", f"{1000 / ms:.1f}")
        else:
            table.add_row(f"{device} latency {batch.replace('_', ' ')}, seq 128", f"{ms:.1f} ms")
    console = Console(width=110)
    console.print(table)
    for sample in result.get("generations") or []:
        console.print(f"{sample['prompt']!r} -> {sample['continuation']!r}")
