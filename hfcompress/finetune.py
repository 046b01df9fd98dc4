"""`hfcompress finetune`: train a model on the task (a classifier's head and body, or a causal LM on text)."""

from __future__ import annotations

import torch

from .arguments import DataArguments, FinetuneArguments, ModelArguments
from .models import load_config, load_for_task, load_tokenizer
from .pipeline import (
    as_task,
    check_training_output,
    finish_run,
    latency_info,
    latency_runs_of,
    load_data,
    measure,
    save_artifact,
    train_model,
    trainer_args_without_push,
)
from .report import build_report
from .tasks import Task
from .training import is_main_process


def finetune_model(model, tokenizer, splits, task, args: FinetuneArguments, max_length: int):
    """Fine-tune in memory and save the result to `args.output_dir`; returns the trained model."""
    task = as_task(task)
    task.configure_model(model)
    model = train_model(model, tokenizer, splits, task, args, max_length)
    if is_main_process(args):
        save_artifact(model, tokenizer, args.output_dir, args)
    return model


def run_finetune(
    model_args: ModelArguments, data_args: DataArguments | Task, args: FinetuneArguments, command: str = ""
):
    """Fine-tune `model_args.model` on the task, evaluate it, and write the model and compression.json.

    `data_args` is the CLI's DataArguments or a task object (`ClassificationTask(...)`, `CausalLMTask(...)`).
    """
    task = as_task(data_args)
    output_dir = check_training_output(args, (model_args.model,))
    trainer_args = trainer_args_without_push(args)
    config = load_config(model_args.model, model_args.trust_remote_code, revision=model_args.revision)
    task.check_config(config, model_args.model)
    if task.kind != "causal-lm":
        from .models import check_max_length

        check_max_length(config, model_args.max_seq_length, model_args.model)
    splits = load_data(task, need_train=True)
    tokenizer = load_tokenizer(model_args.model, model_args.trust_remote_code, model_args.revision)
    splits = task.prepare(splits, tokenizer, config)
    torch.manual_seed(args.seed)
    model, _ = load_for_task(model_args.model, task, model_args)
    model = finetune_model(model, tokenizer, splits, task, trainer_args, model_args.max_seq_length)
    args.early_stopping_result = getattr(trainer_args, "early_stopping_result", None)
    args.training_result = getattr(trainer_args, "training_result", None)
    if not is_main_process(trainer_args):
        return None  # the main process measures, reports and pushes, alone
    runs = latency_runs_of(data_args)
    result = measure(model, tokenizer, task, splits, "fine-tuned", args.output_dir, args.output_dir, runs,
                     model_args.max_seq_length)  # fmt: skip
    report = finetune_report(task, command, model_args.model, result, args, runs)
    finish_run(report, output_dir, args, "Fine-tuning", source_dir=model_args.model)
    return report


def finetune_report(task, command: str, base: str, result: dict, args, latency_runs: int = 10) -> dict:
    """compression.json of a fine-tuned model: the base model has no score, so there are no score ratios."""
    task = as_task(task)
    step = {
        "method": "finetune",
        "model": base,
        "settings": {
            "learning_rate": args.learning_rate,
            "epochs": args.num_train_epochs,
            "seed": args.seed,
            "l1_weight": getattr(args, "l1_weight", 0.0),
            **({"early_stopping": args.early_stopping_result} if getattr(args, "early_stopping_result", None) else {}),
            **(getattr(args, "training_result", None) or {}),
        },  # fmt: skip
        "parameters": result["parameters"],
        "size_bytes": result["size_bytes"],
    }
    source = {"label": "base", "model": base}
    report = build_report(task, command, source, result, [step], latency_info(latency_runs, task))
    report["data"] = task.data_source()
    return report
