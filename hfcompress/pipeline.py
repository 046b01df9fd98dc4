"""Steps every command shares: checking the output folder, loading data, training, measuring, saving."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

from .errors import UsageError
from .measure import describe_model, latency_setup
from .tasks import Task, task_from_args

logger = logging.getLogger("hfcompress")


def check_output_dir(path: str | Path, overwrite: bool, inputs: tuple = ()) -> Path:
    """Refuse a non-empty output folder unless asked to overwrite, one that is or holds an input model, or one
    that cannot be written; never delete anything in it."""
    import os

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"Output path '{path}' exists and is not a directory.")
    for source in inputs:
        if source and Path(source).is_dir() and _is_within(Path(source), path):
            raise UsageError(f"--output-dir '{path}' is or contains the input model '{source}'; choose a new folder.")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UsageError(
            f"Output directory '{path}' already exists and is not empty; pass --overwrite_output_dir to write into it."
        )
    existing = next(p for p in [path, *path.absolute().parents] if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"Cannot write to '{path}': '{existing}' is not writable.")
    return path


def _is_within(inner: Path, outer: Path) -> bool:
    inner, outer = inner.resolve(), outer.resolve()
    return inner == outer or outer in inner.parents


def check_training_output(args, inputs: tuple = ()) -> Path:
    """check_output_dir for a training run: resuming (checked here, before any work) may reuse its folder."""
    from .outputs import begin_output
    from .training import check_processes, is_main_process, resolve_resume

    resumed = resolve_resume(args)
    check_processes(args)
    final = check_output_dir(args.output_dir, args.overwrite_output_dir, inputs)
    staging = begin_output(final, args.overwrite_output_dir, bool(resumed), is_main_process(args))
    args.output_dir = str(staging)  # checkpoints, model, report and card go here until the run is complete
    return staging


def load_data(task, need_train: bool, train: bool = True):
    """The task's splits, checked: a train split when training, an evaluation split always; `train=False`
    (evaluation) does not read the train data at all."""
    return as_task(task).load_splits(need_train, train)


def as_task(data) -> Task:
    """The task of a DataArguments (the CLI's, built once by its checks), or a Task given directly (Python API)."""
    if isinstance(data, Task):
        return data
    return getattr(data, "task_obj", None) or task_from_args(data)


def latency_runs_of(data, default: int = 10) -> int:
    return getattr(data, "latency_runs", default)


def set_label_names(model, task) -> None:
    """Give the config the task's facts: readable labels ('positive' rather than LABEL_1), problem type."""
    as_task(task).configure_model(model)


def check_tokenizers_match(teacher_tokenizer, student_tokenizer, teacher_name: str, student_name: str) -> None:
    if teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab():
        raise UsageError(
            f"The tokenizers of '{teacher_name}' and '{student_name}' have different vocabularies; distillation "
            "needs a student that reads the same token ids as its teacher."
        )


def prepare_pair(main: str, other: str | None, task, model_args):
    """The checks of commands that train one model against another, before any long work.

    Both models must be loadable and fit the task, the task's data must have a train split, and the two
    tokenizers must share a vocabulary. Returns (main name, other name, splits, main tokenizer).
    """
    from .models import check_model_available, load_config, load_tokenizer

    task = as_task(task)
    trust, revision = model_args.trust_remote_code, model_args.revision
    main_name = check_model_available(main)
    other_name = check_model_available(other) if other else None
    config = load_config(main_name, trust_remote_code=trust, revision=revision)
    task.check_config(config, main_name)
    if task.kind != "causal-lm":
        from .models import check_max_length

        check_max_length(config, model_args.max_seq_length, main_name)
    if other_name:
        task.check_config(load_config(other_name, trust_remote_code=trust), other_name)
    splits = load_data(task, need_train=True)
    tokenizer = load_tokenizer(main_name, trust, revision)
    if other_name:
        check_tokenizers_match(tokenizer, load_tokenizer(other_name, trust), main_name, other_name)
    splits = task.prepare(splits, tokenizer, config)
    return main_name, other_name, splits, tokenizer


def train_model(model, tokenizer, splits, task, args, max_length: int):
    """Fine-tune `model` on the task's train split with a `transformers.Trainer` (plus `--l1-weight`'s penalty)."""
    from .regularization import L1Trainer

    task = as_task(task)
    stopper = early_stopping(task, tokenizer, splits, max_length, args)
    trainer = L1Trainer(
        model=model,
        args=args,
        train_dataset=task.train_dataset(splits, tokenizer, max_length),
        eval_dataset=task.eval_dataset(splits, tokenizer, max_length) if args.eval_strategy != "no" else None,
        processing_class=tokenizer,
        data_collator=task.collator(tokenizer),
        callbacks=[stopper] if stopper else None,
    )
    from .training import run_training

    args.training_result = run_training(trainer, args)
    if stopper:
        args.early_stopping_result = stopper.restore(trainer.model)
    return trainer.model


def early_stopping(task, tokenizer, splits, max_length: int, args):
    """The early-stopping callback when `--early-stopping-patience` asks for one, else None."""
    patience = getattr(args, "early_stopping_patience", 0)
    if not patience:
        return None
    from .early_stopping import TaskScoreEarlyStopping

    return TaskScoreEarlyStopping(as_task(task), tokenizer, splits, max_length, patience, args.output_dir)


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
    """The task's metrics and score, parameters, size and latency of one model, as stored in compression.json."""
    task = as_task(task)
    logger.info("Evaluating %s on %s", label, task.name)
    metrics = task.evaluate(model, tokenizer, splits, max_length)
    entry = {"label": label, "model": name, "metrics": metrics, "score": task.score(metrics)}
    entry.update(task.extra_measurements(model, tokenizer, splits))
    entry.update(describe_model(model, directory))
    if latency_runs:
        entry["latency_ms"] = task.latency(model, latency_runs)
    return entry


def data_source(task) -> dict:
    """Where the data came from, for the report and the model card."""
    return as_task(task).data_source()


def latency_info(latency_runs: int, task=None) -> dict | None:
    if not latency_runs:
        return None
    return as_task(task).latency_setup(latency_runs) if task is not None else latency_setup(repeats=latency_runs)


def trainer_args_without_push(args):
    """Check a requested push can work before training, and return args for the Trainer that never push.

    hfcompress pushes the finished folder itself, with its own model card; the Trainer's push would
    create the repo early and upload its auto-generated card instead.
    """
    if not getattr(args, "push_to_hub", False):
        return args
    from .hub import check_token
    from .hub.push import check_repo_id

    if args.hub_model_id and "/" in args.hub_model_id:
        check_repo_id(args.hub_model_id)  # a bad id found after training would waste the run's push
    check_token(args.hub_token)
    trainer_args = copy.copy(args)
    trainer_args.push_to_hub = False
    return trainer_args


def finish_run(report: dict, output_dir: Path, args, title: str, source_dir: str | Path | None = None) -> None:
    """Write compression.json and the model card, print the summary, and push when asked to."""
    import json

    from .cards import write_model_card
    from .outputs import commit_output, replace_paths
    from .report import print_summary, write_report

    report = json.loads(replace_paths(json.dumps(report), Path(output_dir)))
    write_report(report, output_dir)
    # Only a local source folder can hold a README to merge; a Hub id or alias has none here.
    local_source = source_dir if source_dir and Path(source_dir).is_dir() else None
    write_model_card(output_dir, source_dir=local_source)
    output_dir = commit_output(output_dir, getattr(args, "overwrite_output_dir", False))
    args.output_dir = str(output_dir)
    print_summary(report, title)
    if getattr(args, "push_to_hub", False):
        from .errors import HfcompressError
        from .hub import push_folder
        from .hub.push import without_retry_advice

        repo_id = args.hub_model_id or Path(output_dir).resolve().name
        try:
            url = push_folder(output_dir, repo_id, private=bool(args.hub_private_repo), token=args.hub_token)
        except HfcompressError as err:
            # The same command again would be refused (the output folder exists now): say how to push what is saved.
            private = " --private" if args.hub_private_repo else ""
            raise HfcompressError(
                f"The model is saved at '{output_dir}', but pushing it failed ({without_retry_advice(str(err))}); "
                f"push it with: hfcompress push {output_dir} --repo-id {repo_id}{private}"
            ) from None
        print(f"Pushed {output_dir} to {url}")
