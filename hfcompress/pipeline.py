"""Steps every command shares: checking the output folder, loading data, training, measuring, saving."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

from .arguments import DataArguments
from .data import GlueTask, get_task, load_glue
from .data.synthetic import SYNTHETIC_MARKER
from .errors import UsageError
from .evaluation import evaluate_model, glue_score, tokenize_splits
from .measure import describe_model, latency_setup, torch_latency_ms

logger = logging.getLogger("hfcompress")


def check_output_dir(path: str | Path, overwrite: bool) -> Path:
    """Refuse a non-empty output folder unless asked to overwrite; never delete anything in it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"Output path '{path}' exists and is not a directory.")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UsageError(
            f"Output directory '{path}' already exists and is not empty; pass --overwrite_output_dir to write into it."
        )
    return path


def load_data(data_args: DataArguments, need_train: bool):
    splits = load_glue(
        data_args.task,
        data_dir=data_args.data_dir,
        train_file=data_args.train_file,
        validation_file=data_args.validation_file,
        max_train_samples=data_args.max_train_samples,
        max_eval_samples=data_args.max_eval_samples,
    )
    task = get_task(data_args.task)
    if need_train and "train" not in splits:
        raise UsageError(f"Training needs a train split for {task.name}; pass --train-file or a --data-dir with one.")
    if not any(split in splits for split in task.validation_splits):
        raise UsageError(f"Evaluation needs a validation split for {task.name}; pass --validation-file or --data-dir.")
    return splits


def set_label_names(model, task: GlueTask) -> None:
    """Give the config readable labels, so pipelines and the Hub widget show 'positive' rather than LABEL_1."""
    if task.label_names:
        model.config.id2label = dict(enumerate(task.label_names))
        model.config.label2id = {name: i for i, name in enumerate(task.label_names)}
    if task.is_regression:
        model.config.problem_type = "regression"
    else:
        model.config.problem_type = "single_label_classification"


def check_tokenizers_match(teacher_tokenizer, student_tokenizer, teacher_name: str, student_name: str) -> None:
    if teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab():
        raise UsageError(
            f"The tokenizers of '{teacher_name}' and '{student_name}' have different vocabularies; distillation "
            "needs a student that reads the same token ids as its teacher."
        )


def prepare_pair(main: str, other: str | None, data_args: DataArguments, trust_remote_code: bool = False):
    """The checks of commands that train one model against another, before any long work.

    Both models must be loadable, the task's data must have a train split, and the two tokenizers
    must share a vocabulary. Returns (main name, other name, splits, main tokenizer).
    """
    from .models import check_model_available, load_tokenizer

    main_name = check_model_available(main)
    other_name = check_model_available(other) if other else None
    splits = load_data(data_args, need_train=True)
    tokenizer = load_tokenizer(main_name, trust_remote_code)
    if other_name:
        check_tokenizers_match(tokenizer, load_tokenizer(other_name, trust_remote_code), main_name, other_name)
    return main_name, other_name, splits, tokenizer


def train_classifier(model, tokenizer, splits, task: GlueTask, args, max_length: int):
    """Fine-tune `model` on the task's train split with a plain `transformers.Trainer`."""
    from transformers import DataCollatorWithPadding, Trainer

    train = tokenize_splits(splits["train"], tokenizer, task, max_length)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    trainer.train()
    return trainer.model


def save_artifact(model, tokenizer, output_dir: str | Path, training_args=None) -> None:
    """Save safetensors weights, config, tokenizer and the training arguments as JSON (no pickles)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    if training_args is not None:
        (output_dir / "training_args.json").write_text(training_args.to_json_string())


def measure(
    model,
    tokenizer,
    task,
    splits,
    label: str,
    name: str,
    directory=None,
    latency_runs: int = 10,
    max_length: int = 128,
) -> dict:
    """GLUE dev metrics, parameters, size and CPU latency of one model, as stored in compression.json."""
    logger.info("Evaluating %s on %s", label, task.name)
    metrics = evaluate_model(model, tokenizer, task, splits, max_length=max_length)
    entry = {"label": label, "model": name, "metrics": metrics, "score": glue_score(metrics)}
    entry.update(describe_model(model, directory))
    if latency_runs:
        entry["latency_ms"] = torch_latency_ms(model, repeats=latency_runs)
    return entry


def data_source(data_args: DataArguments) -> dict:
    """Where the data came from, for the report and the model card."""
    info = {"eval_rows": data_args.max_eval_samples, "train_rows": data_args.max_train_samples}
    if data_args.data_dir:
        root = Path(data_args.data_dir)
        synthetic = (root / SYNTHETIC_MARKER).exists() or any(root.glob(f"*/{SYNTHETIC_MARKER}"))
        return {**info, "kind": "synthetic" if synthetic else "glue_dir", "path": str(root)}
    if data_args.train_file or data_args.validation_file:
        return {**info, "kind": "files", "path": data_args.validation_file or data_args.train_file}
    return {**info, "kind": "hub", "path": "nyu-mll/glue"}


def latency_info(latency_runs: int) -> dict | None:
    return latency_setup(repeats=latency_runs) if latency_runs else None


def trainer_args_without_push(args):
    """Check a requested push can work before training, and return args for the Trainer that never push.

    hfcompress pushes the finished folder itself, with its own model card; the Trainer's push would
    create the repo early and upload its auto-generated card instead.
    """
    if not getattr(args, "push_to_hub", False):
        return args
    from .hub import check_token

    check_token(args.hub_token)
    trainer_args = copy.copy(args)
    trainer_args.push_to_hub = False
    return trainer_args


def finish_run(report: dict, output_dir: Path, args, title: str, source_dir: str | Path | None = None) -> None:
    """Write compression.json and the model card, print the summary, and push when asked to."""
    from .cards import write_model_card
    from .report import print_summary, write_report

    write_report(report, output_dir)
    # Only a local source folder can hold a README to merge; a Hub id or alias has none here.
    local_source = source_dir if source_dir and Path(source_dir).is_dir() else None
    write_model_card(output_dir, source_dir=local_source)
    print_summary(report, title)
    if getattr(args, "push_to_hub", False):
        from .hub import push_folder

        repo_id = args.hub_model_id or Path(output_dir).resolve().name
        url = push_folder(output_dir, repo_id, private=bool(args.hub_private_repo), token=args.hub_token)
        print(f"Pushed {output_dir} to {url}")
