"""Tasks: what a verb needs to know about the job it does (see `base.Task`).

`glue` (the nine GLUE tasks by name), `classification` (any text-classification data) and `causal-lm`
(language modelling on raw text). `task_from_args` builds one from the CLI's DataArguments;
`task_from_report` rebuilds it from a compression.json for cards and summaries.
"""

from __future__ import annotations

from ..data import GLUE_TASKS
from ..errors import UsageError
from .base import Task, TaskType
from .causal_lm import CausalLMTask
from .classification import ClassificationTask
from .glue import GlueTaskConfig

TASK_CHOICES = (*sorted(GLUE_TASKS), TaskType.CLASSIFICATION.value, TaskType.CAUSAL_LM.value)

# Flags that only one kind reads: given with another kind they would be silently ignored, so they are refused.
_ONLY_FOR = {
    "data_dir": (TaskType.GLUE,),
    "dataset": (TaskType.CLASSIFICATION, TaskType.CAUSAL_LM),
    "dataset_config": (TaskType.CLASSIFICATION, TaskType.CAUSAL_LM),
    "train_split": (TaskType.CLASSIFICATION, TaskType.CAUSAL_LM),
    "validation_split": (TaskType.CLASSIFICATION, TaskType.CAUSAL_LM),
    "text_columns": (TaskType.CLASSIFICATION,),
    "label_column": (TaskType.CLASSIFICATION,),
    "text_column": (TaskType.CAUSAL_LM,),
    "block_size": (TaskType.CAUSAL_LM,),
    "stride": (TaskType.CAUSAL_LM,),
}


def task_kind(name: str) -> TaskType:
    from ..data import get_task as get_glue_spec

    normalized = name.strip().lower().replace("_", "-")
    if normalized in (TaskType.CLASSIFICATION.value, TaskType.CAUSAL_LM.value):
        return TaskType(normalized)
    try:
        get_glue_spec(name)
    except UsageError:
        raise UsageError(f"Unknown task {name!r}; choose a GLUE task ({', '.join(sorted(GLUE_TASKS))}), "
                         "classification or causal-lm.") from None  # fmt: skip
    return TaskType.GLUE


def task_from_args(data_args) -> Task:
    """The task a DataArguments describes; flags that do not apply to its kind are refused."""
    if isinstance(data_args, Task):
        return data_args
    kind = task_kind(data_args.task)
    for option, kinds in _ONLY_FOR.items():
        if getattr(data_args, option, None) not in (None, "") and kind not in kinds:
            flag = "--" + option.replace("_", "-")
            names = " or ".join(k.value for k in kinds if k != TaskType.GLUE) or "GLUE tasks"
            raise UsageError(f"{flag} does not apply to --task {data_args.task}; it is for --task {names}.")
    common = dict(max_train_samples=data_args.max_train_samples, max_eval_samples=data_args.max_eval_samples)
    if kind == TaskType.GLUE:
        return GlueTaskConfig(task=data_args.task, data_dir=data_args.data_dir, train_file=data_args.train_file,
                              validation_file=data_args.validation_file, **common)  # fmt: skip
    splits = {k: getattr(data_args, k) for k in ("train_split", "validation_split") if getattr(data_args, k)}
    files = dict(dataset=data_args.dataset, dataset_config=data_args.dataset_config,
                 train_file=data_args.train_file, validation_file=data_args.validation_file)  # fmt: skip
    if kind == TaskType.CLASSIFICATION:
        extra = {"text_columns": data_args.text_columns} if data_args.text_columns else {}
        if data_args.label_column:
            extra["label_column"] = data_args.label_column
        return ClassificationTask(**files, **splits, **extra, **common)
    extra = {"text_column": data_args.text_column} if data_args.text_column else {}
    return CausalLMTask(**files, **splits, **extra, block_size=data_args.block_size, stride=data_args.stride,
                        **common)  # fmt: skip


def task_from_report(report: dict) -> Task:
    """The task of a compression.json (GLUE when it records no task_info: reports from before task kinds)."""
    info = report.get("task_info") or {}
    kind = info.get("kind", TaskType.GLUE.value)
    if kind == TaskType.GLUE.value:
        return GlueTaskConfig(task=report["task"], data_dir=".")
    if kind == TaskType.CLASSIFICATION.value:
        return ClassificationTask(
            dataset=info.get("dataset") or "recorded", dataset_config=info.get("dataset_config"),
            text_columns=tuple(info.get("text_columns") or ("text",)), label_column=info.get("label_column", "label"),
            label_names=info.get("label_names"), is_regression=bool(info.get("is_regression")),
        )._from_report(info)  # fmt: skip
    return CausalLMTask(dataset=info.get("dataset") or "recorded", dataset_config=info.get("dataset_config"),
                        block_size=info.get("block_size"), stride=info.get("stride"))._from_report(info)  # fmt: skip


__all__ = [
    "TASK_CHOICES",
    "CausalLMTask",
    "ClassificationTask",
    "GlueTaskConfig",
    "Task",
    "TaskType",
    "task_from_args",
    "task_from_report",
    "task_kind",
]
