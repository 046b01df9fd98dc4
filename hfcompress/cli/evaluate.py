"""hfcompress evaluate MODEL --task sst2 [--data-dir DIR]"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..arguments import DataArguments, ModelArguments
from ..data import get_task
from ..errors import UsageError
from ..models import load_sequence_classifier, load_tokenizer
from ..pipeline import latency_info, load_data, measure
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
    model, fresh_head = load_sequence_classifier(model_args.model, task.num_labels, model_args.trust_remote_code)
    if fresh_head:
        raise UsageError(
            f"'{model_args.model}' has no classification head trained for {task.name} ({task.num_labels} labels); "
            f"fine-tune it first with: hfcompress finetune {model_args.model} --task {task.name} --output-dir DIR."
        )
    directory = model_args.model if Path(model_args.model).is_dir() else None
    entry = measure(
        model,
        tokenizer,
        task,
        splits,
        "model",
        model_args.model,
        directory,
        data_args.latency_runs,
        model_args.max_seq_length,
    )
    result = {"task": task.name, **entry, "latency_setup": latency_info(data_args.latency_runs)}
    _print(result)
    if eval_args.output_file:
        Path(eval_args.output_file).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _print(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['model']} on {result['task']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in result["metrics"].items():
        table.add_row(name, f"{value:.4f}")
    table.add_row("parameters", f"{result['parameters'] / 1e6:.2f} M")
    table.add_row("size on disk", f"{result['size_bytes'] / 1e6:.1f} MB")
    for batch, ms in (result.get("latency_ms") or {}).items():
        table.add_row(f"CPU latency {batch.replace('_', ' ')}, seq 128", f"{ms:.1f} ms")
    Console(width=110).print(table)
