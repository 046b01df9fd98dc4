"""The interface every task kind implements; verbs, evaluation, measurement, reports and cards ask it.

A task owns what is task-specific: which `AutoModelFor*` class, how data is loaded, tokenised and collated,
the metrics and which one is the score (and whether lower is better), what latency means, and the Hub card
metadata. Commands never branch on the kind of task; they call these methods.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar


class TaskType(str, Enum):
    """The task kinds, named as on the command line (`--task causal-lm`); GLUE tasks go by their own names."""

    GLUE = "glue"
    CLASSIFICATION = "classification"
    CAUSAL_LM = "causal-lm"


class Task:
    """Base class of a task. Subclasses are dataclasses holding where the data is and how to read it."""

    kind: ClassVar[TaskType]
    pipeline_tag: ClassVar[str]
    lower_is_better: ClassVar[bool] = False
    score_name: ClassVar[str] = "score"
    # Limits on rows (or blocks, for causal LMs) of training and evaluation data.
    max_train_samples: int | None = None
    max_eval_samples: int | None = None

    # -- identity -------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """What compression.json's `task` holds: a GLUE task name, or the kind."""
        return self.kind.value

    def info(self) -> dict:
        """Everything needed to rebuild the task from compression.json (`task_info`)."""
        raise NotImplementedError

    def _from_report(self, info: dict):
        """Rebuilt from a report: the dataset recorded there (None for local files), data or not."""
        self.dataset = info.get("dataset")
        return self

    # -- models ---------------------------------------------------------------------------------------
    def auto_class(self):
        """The `transformers.AutoModelFor*` class for this task."""
        raise NotImplementedError

    def check_config(self, config, name: str) -> None:
        """Refuse, before loading weights, a checkpoint this task cannot use (one sentence)."""

    def configure_model(self, model) -> None:
        """Write task facts into the model's config before saving (label names, problem type)."""

    def model_kwargs(self) -> dict:
        """Extra `from_pretrained` arguments (for example `num_labels`)."""
        return {}

    def check_trained(self, config, name: str) -> None:
        """Refuse a checkpoint whose head was not trained for this task, where that matters (evaluation)."""

    # -- data -----------------------------------------------------------------------------------------
    def load_splits(self, need_train: bool, train: bool = True):
        """A DatasetDict with "train" (when present or needed) and the evaluation split(s).

        `train=False` (evaluation) leaves the train split out without reading it.
        """
        raise NotImplementedError

    def prepare(self, splits, tokenizer=None, model_config=None):
        """Settle what depends on the tokenizer or the model (label ids, block size), checked before training.

        Returns the splits, changed where the task needs it (label names mapped to ids).
        """
        return splits

    def train_dataset(self, splits, tokenizer, max_length: int):
        raise NotImplementedError

    def eval_dataset(self, splits, tokenizer, max_length: int):
        """The held-out split in the training format, for the Trainer's evaluation (early stopping), or None."""
        return None

    def collator(self, tokenizer):
        raise NotImplementedError

    def data_source(self) -> dict:
        """Where the data came from, for the report and the card."""
        raise NotImplementedError

    # -- metrics and measurement -------------------------------------------------------------------------
    def evaluate(self, model, tokenizer, splits, max_length: int) -> dict[str, Any]:
        """Metrics of `model` on the evaluation data: {name: value}."""
        raise NotImplementedError

    def score(self, metrics: dict) -> float:
        raise NotImplementedError

    def latency(self, model, repeats: int) -> dict[str, float]:
        """{"name_of_measurement": milliseconds}; lower is faster for every entry."""
        from ..measure import torch_latency_ms

        return torch_latency_ms(model, repeats=repeats)

    def latency_setup(self, repeats: int) -> dict:
        from ..measure import latency_setup

        return latency_setup(repeats=repeats)

    def extra_measurements(self, model, tokenizer, splits) -> dict:
        """Entries added to a model's report besides metrics, size and latency (a causal LM's generations)."""
        return {}

    # -- cards ----------------------------------------------------------------------------------------
    def card(self) -> dict:
        """Texts and metadata of the model card: see `tasks.card_fields` for the keys."""
        raise NotImplementedError

    def card_data_sentence(self, data: dict) -> str:
        """One sentence on where the training and evaluation data came from."""
        subset = f" (the first {data['eval_rows']} rows only)" if data.get("eval_rows") else ""
        if data.get("kind") == "hub":
            config = f", config `{data['config']}`" if data.get("config") else ""
            split = data.get("split") or "validation"
            return f"Data: `{data['path']}` from the Hub{config}; results are on its `{split}` split{subset}."
        if data.get("kind") == "files":
            return f"Data: the user's own files; results are on `{data.get('path')}`{subset}."
        return f"Data: not recorded (the run came from the Python API){subset}."

    def card_eval_results(self, metrics: dict, data: dict) -> list[dict]:
        """model-index entries {dataset_type, dataset_name, dataset_config, dataset_split, metric, value, subset}."""
        if data.get("kind") == "hub":
            dataset, name, split = data["path"], data["path"], data.get("split") or "validation"
        elif data.get("kind") == "files" and data.get("path"):
            from pathlib import Path

            # The local file is not a Hub dataset: the "text" or "csv" builder is how `datasets` would read it.
            dataset, name, split = "text", f"{Path(data['path']).name} (local file)", "validation"
        else:
            return []
        subset = f" on the first {data['eval_rows']} rows" if data.get("eval_rows") else ""
        wanted = self.card()["metrics"]
        return [
            {"dataset_type": dataset, "dataset_name": name, "dataset_config": data.get("config"),
             "dataset_split": split, "metric": metric, "value": metrics[metric], "subset": subset}
            for metric in wanted if isinstance(metrics.get(metric), (int, float))
        ]  # fmt: skip

    def card_tags(self, data: dict) -> list[str]:
        return list(self.card().get("tags") or [])

    def card_datasets(self, data: dict) -> list[str] | None:
        return [data["path"]] if data.get("kind") == "hub" else None
