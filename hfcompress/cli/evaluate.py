"""hfcompress evaluate MODEL --task sst2 [--data-dir DIR]"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..arguments import DataArguments, ModelArguments
from ..data import get_task
from ..errors import UsageError
from ..models import load_sequence_classifier, load_tokenizer
from ..pipeline import latency_info, load_data, measure
from ..quantization.quantize import quantized_backend
from .common import parse_dataclasses

DESCRIPTION = "Evaluate a fine-tuned model on a GLUE dev set with the task's official metric, plus size and latency."


@dataclass
class EvaluateArguments:
    output_file: str | None = field(default=None, metadata={"help": "Also write the results to this JSON file."})


def run(argv: list[str]) -> int:
    model_args, data_args, eval_args = parse_dataclasses(
        argv, (ModelArguments, DataArguments, EvaluateArguments), "evaluate", DESCRIPTION, positional="model"
    )
    task = get_task(data_args.task)
    if eval_args.output_file and Path(eval_args.output_file).exists():
        raise UsageError(f"Output file '{eval_args.output_file}' already exists; choose another name.")
    splits = load_data(data_args, need_train=False)
    tokenizer = load_tokenizer(model_args.model, model_args.trust_remote_code)
    backend = quantized_backend(model_args.model) if Path(model_args.model).is_dir() else None
    if backend:
        entry = _measure_quantized(model_args, task, splits, tokenizer, backend, data_args.latency_runs)
    else:
        entry = _measure_fp(model_args, task, splits, tokenizer, data_args.latency_runs)
    result = {"task": task.name, **entry, "latency_setup": latency_info(data_args.latency_runs)}
    _print(result)
    if eval_args.output_file:
        Path(eval_args.output_file).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _measure_fp(model_args, task, splits, tokenizer, latency_runs: int) -> dict:
    model, fresh_head = load_sequence_classifier(model_args.model, task.num_labels, model_args.trust_remote_code)
    if fresh_head:
        raise UsageError(
            f"'{model_args.model}' has no classification head trained for {task.name} ({task.num_labels} labels); "
            f"fine-tune it first with: hfcompress finetune {model_args.model} --task {task.name} --output-dir DIR."
        )
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
    from ..models import load_config
    from ..quantization.run import measure_quantized
    from ..report import read_report

    config = load_config(model_args.model, trust_remote_code=model_args.trust_remote_code)
    if config.num_labels != task.num_labels:
        raise UsageError(
            f"'{model_args.model}' has a {config.num_labels}-label head, but {task.name} needs {task.num_labels}."
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
        table.add_row(name, f"{value:.4f}")
    if result.get("parameters"):
        table.add_row("parameters", f"{result['parameters'] / 1e6:.2f} M")
    table.add_row("size on disk", f"{result['size_bytes'] / 1e6:.1f} MB")
    if result.get("memory_bytes"):
        table.add_row(f"parameter memory ({result['backend']})", f"{result['memory_bytes'] / 1e6:.1f} MB")
    for batch, ms in (result.get("latency_ms") or {}).items():
        table.add_row(f"CPU latency {batch.replace('_', ' ')}, seq 128", f"{ms:.1f} ms")
    Console(width=110).print(table)
