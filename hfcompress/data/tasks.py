"""The nine GLUE tasks: their Hub columns, label names and metrics."""

from dataclasses import dataclass

from hfcompress.errors import UsageError


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task as the nyu-mll/glue dataset on the Hub lays it out."""

    name: str
    text_columns: tuple[str, ...]
    label_names: tuple[str, ...]  # in the Hub's id order; empty for regression (stsb)
    metrics: tuple[str, ...]
    validation_splits: tuple[str, ...] = ("validation",)

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_names)


_PAIR = ("sentence1", "sentence2")
_ENTAILMENT = ("entailment", "not_entailment")

GLUE_TASKS: dict[str, GlueTask] = {
    task.name: task
    for task in (
        GlueTask("cola", ("sentence",), ("unacceptable", "acceptable"), ("matthews_correlation",)),
        GlueTask("sst2", ("sentence",), ("negative", "positive"), ("accuracy",)),
        GlueTask("mrpc", _PAIR, ("not_equivalent", "equivalent"), ("f1", "accuracy")),
        GlueTask("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), ("f1", "accuracy")),
        GlueTask("stsb", _PAIR, (), ("pearson", "spearmanr")),
        GlueTask(
            "mnli",
            ("premise", "hypothesis"),
            ("entailment", "neutral", "contradiction"),
            ("accuracy",),
            ("validation_matched", "validation_mismatched"),
        ),
        GlueTask("qnli", ("question", "sentence"), _ENTAILMENT, ("accuracy",)),
        GlueTask("rte", _PAIR, _ENTAILMENT, ("accuracy",)),
        GlueTask("wnli", _PAIR, ("not_entailment", "entailment"), ("accuracy",)),
    )
}


def _normalize(name: str) -> str:
    return "".join(char for char in name.lower() if char.isalnum())


def get_task(name: str | GlueTask) -> GlueTask:
    """Look up a GLUE task by name, ignoring case and punctuation ("SST-2", "sts_b", "CoLA")."""
    if isinstance(name, GlueTask):
        return name
    task = GLUE_TASKS.get(_normalize(name)) if isinstance(name, str) else None
    if task is None:
        raise UsageError(f"Unknown GLUE task {name!r}; choose one of: {', '.join(sorted(GLUE_TASKS))}.")
    return task
