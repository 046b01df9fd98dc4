"""`hfcompress finetune`: train a model's classification head (and body) on a GLUE task."""

from __future__ import annotations

import torch

from .arguments import DataArguments, FinetuneArguments, ModelArguments
from .data import get_task
from .models import load_sequence_classifier, load_tokenizer
from .pipeline import (
    check_output_dir,
    data_source,
    finish_run,
    latency_info,
    load_data,
    measure,
    save_artifact,
    set_label_names,
    train_classifier,
    trainer_args_without_push,
)
from .report import build_report


def finetune_model(model, tokenizer, splits, task, args: FinetuneArguments, max_length: int):
    """Fine-tune in memory and save the result to `args.output_dir`; returns the trained model."""
    set_label_names(model, task)
    model = train_classifier(model, tokenizer, splits, task, args, max_length)
    save_artifact(model, tokenizer, args.output_dir, args)
    return model


def run_finetune(model_args: ModelArguments, data_args: DataArguments, args: FinetuneArguments, command: str = ""):
    """Fine-tune `model_args.model` on the task, evaluate it, and write the model and compression.json."""
    task = get_task(data_args.task)
    output_dir = check_output_dir(args.output_dir, args.overwrite_output_dir)
    trainer_args = trainer_args_without_push(args)
    splits = load_data(data_args, need_train=True)
    tokenizer = load_tokenizer(model_args.model, model_args.trust_remote_code)
    torch.manual_seed(args.seed)
    model, _ = load_sequence_classifier(model_args.model, task.num_labels, model_args.trust_remote_code)
    model = finetune_model(model, tokenizer, splits, task, trainer_args, model_args.max_seq_length)
    result = measure(
        model,
        tokenizer,
        task,
        splits,
        "fine-tuned",
        args.output_dir,
        args.output_dir,
        data_args.latency_runs,
        model_args.max_seq_length,
    )
    report = finetune_report(task, command, model_args.model, result, args, data_args)
    finish_run(report, output_dir, args, "Fine-tuning", source_dir=model_args.model)
    return report


def finetune_report(task, command: str, base: str, result: dict, args, data_args: DataArguments) -> dict:
    """compression.json of a fine-tuned model: the base model has no score, so there are no score ratios."""
    step = {
        "method": "finetune",
        "model": base,
        "settings": {"learning_rate": args.learning_rate, "epochs": args.num_train_epochs, "seed": args.seed},
        "parameters": result["parameters"],
        "size_bytes": result["size_bytes"],
    }
    source = {"label": "base", "model": base}
    report = build_report(task.name, command, source, result, [step], latency_info(data_args.latency_runs))
    report["data"] = data_source(data_args)
    return report
