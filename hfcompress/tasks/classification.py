"""Any text-classification data: a Hub dataset or csv/tsv/json/jsonl/parquet files, with named columns.

String labels get ids in sorted order (kept in the model's `id2label`); whole-number labels are ids already;
float labels make a regression task. Metrics: accuracy and macro-F1 (regression: Pearson, Spearman, MSE).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import HfcompressError, UsageError
from .base import Task, TaskType

FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet")
CAUSAL_ARCHITECTURES = ("ForCausalLM", "LMHeadModel")


def is_causal_lm_config(config) -> bool:
    return any(arch.endswith(CAUSAL_ARCHITECTURES) for arch in getattr(config, "architectures", None) or [])


def refuse_causal_lm(config, name: str, task_name: str) -> None:
    if is_causal_lm_config(config):
        raise UsageError(
            f"'{name}' is a causal language model ({config.architectures[0]}), not a text classifier, so it "
            f"cannot be used for the classification task {task_name}; use --task causal-lm with it."
        )


@dataclass
class ClassificationTask(Task):
    """Text classification (or regression) on the user's data."""

    dataset: str | None = None
    dataset_config: str | None = None
    train_file: str | None = None
    validation_file: str | None = None
    train_split: str = "train"
    validation_split: str = "validation"
    text_columns: tuple[str, ...] = ("text",)
    label_column: str = "label"
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    label_names: tuple[str, ...] | None = field(default=None)  # settled by prepare(); None for regression
    is_regression: bool = False

    kind = TaskType.CLASSIFICATION
    pipeline_tag = "text-classification"
    score_name = "accuracy"

    def __post_init__(self):
        if isinstance(self.text_columns, str):
            self.text_columns = tuple(c.strip() for c in self.text_columns.split(",") if c.strip())
        self.text_columns = tuple(self.text_columns)
        if not 1 <= len(self.text_columns) <= 2:
            raise UsageError("--text-columns takes one or two column names, e.g. --text-columns premise,hypothesis.")
        has_files = bool(self.train_file or self.validation_file)
        if self.dataset and has_files:
            raise UsageError("Pass either --dataset or --train-file/--validation-file, not both.")
        if not self.dataset and not has_files:
            raise UsageError(
                "--task classification needs data: --dataset NAME (a Hub dataset) or --train-file/--validation-file."
            )
        for path in (self.train_file, self.validation_file):
            if path and not str(path).lower().endswith(FILE_SUFFIXES):
                raise UsageError(f"Data file {path} must end in {', '.join(FILE_SUFFIXES)}.")
        if self.label_names is not None:
            self.label_names = tuple(self.label_names)
        if self.is_regression:
            self.score_name = "pearson"

    @property
    def num_labels(self) -> int | None:
        if self.is_regression:
            return 1
        return len(self.label_names) if self.label_names is not None else None

    @property
    def validation_splits(self) -> tuple[str, ...]:
        return ("validation",)

    def info(self) -> dict:
        return {
            "kind": self.kind.value,
            "name": self.name,
            "lower_is_better": False,
            "score": self.score_name,
            "dataset": self.dataset,
            "dataset_config": self.dataset_config,
            "text_columns": list(self.text_columns),
            "label_column": self.label_column,
            "label_names": list(self.label_names) if self.label_names is not None else None,
            "is_regression": self.is_regression,
        }

    # -- models ---------------------------------------------------------------------------------------
    def auto_class(self):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def check_config(self, config, name: str) -> None:
        refuse_causal_lm(config, name, "classification")

    def model_kwargs(self) -> dict:
        return {"num_labels": self.num_labels} if self.num_labels else {}

    def configure_model(self, model) -> None:
        config = model.config
        if self.is_regression:
            config.problem_type = "regression"
            return
        config.id2label = dict(enumerate(self.label_names))
        config.label2id = {name: i for i, name in enumerate(self.label_names)}
        config.problem_type = "single_label_classification"

    def check_trained(self, config, name: str) -> None:
        if not trained_labels(config):
            raise UsageError(
                f"'{name}' has no trained classification head; fine-tune it first with: hfcompress finetune "
                f"{name} --task classification ... --output-dir DIR."
            )

    # -- data -----------------------------------------------------------------------------------------
    def load_splits(self, need_train: bool, train: bool = True):
        from datasets import DatasetDict

        raw = self._load_hub() if self.dataset else self._load_files(train or need_train)
        if need_train and "train" not in raw:
            raise UsageError("Training needs a train split; pass --train-file (or a --dataset with a train split).")
        if "validation" not in raw:
            raise UsageError(
                "Evaluation needs a validation split; pass --validation-file (or a Hub dataset's --validation-split)."
            )
        splits = DatasetDict()
        for split, rows in raw.items():
            if not rows["label"]:
                raise UsageError(f"The {split} data holds no rows.")
            splits[split] = rows
        return self._limit(splits)

    def _limit(self, splits):
        from datasets import Dataset, DatasetDict

        out = DatasetDict()
        for split, rows in splits.items():
            dataset = Dataset.from_dict(rows)
            limit = self.max_train_samples if split == "train" else self.max_eval_samples
            if limit is not None and limit < len(dataset):
                dataset = dataset.shuffle(seed=42).select(range(limit))
            out[split] = dataset
        return out

    def _load_hub(self) -> dict:
        from datasets import ClassLabel, load_dataset
        from datasets.exceptions import DatasetNotFoundError

        try:
            loaded = load_dataset(self.dataset, self.dataset_config)
        except (OSError, DatasetNotFoundError, ConnectionError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise HfcompressError(
                f"Could not load the dataset '{self.dataset}' from the Hub ({reason}); pass --train-file and "
                "--validation-file instead."
            ) from err
        wanted = {"train": self.train_split, "validation": self.validation_split}
        raw = {}
        for split, hub_split in wanted.items():
            if hub_split not in loaded:
                continue
            dataset = loaded[hub_split]
            self._check_columns(dataset.column_names, f"the {hub_split} split of {self.dataset}")
            feature = dataset.features[self.label_column]
            if isinstance(feature, ClassLabel) and self.label_names is None:
                self.label_names = tuple(feature.names)
            raw[split] = {c: dataset[c] for c in (*self.text_columns, self.label_column)}
        return {split: self._rows(columns, split) for split, columns in raw.items()}

    def _load_files(self, train: bool = True) -> dict:
        raw = {}
        for split, path in (("train", self.train_file if train else None), ("validation", self.validation_file)):
            if path:
                records = read_records(Path(path))
                self._check_columns(list(records[0]), str(path))
                raw[split] = {c: [r.get(c) for r in records] for c in (*self.text_columns, self.label_column)}
        return {split: self._rows(columns, split) for split, columns in raw.items()}

    def _check_columns(self, present: list[str], where: str) -> None:
        missing = [c for c in (*self.text_columns, self.label_column) if c not in present]
        if missing:
            flag = "--label-column" if missing[0] == self.label_column else "--text-columns"
            raise UsageError(
                f"{where} has no column {missing[0]!r} (it has {', '.join(map(repr, present))}); name the right "
                f"one with {flag}."
            )

    def _rows(self, columns: dict, split: str) -> dict:
        rows = {"text_a": [], "text_b": [], "label": []}
        for i, label in enumerate(columns[self.label_column]):
            texts = [columns[c][i] for c in self.text_columns]
            if not all(isinstance(t, str) for t in texts):
                raise UsageError(f"Row {i + 1} of the {split} data has no text in column(s) {self.text_columns}.")
            if label is None or (isinstance(label, str) and not label.strip()):
                raise UsageError(f"Row {i + 1} of the {split} data has no label in column {self.label_column!r}.")
            rows["text_a"].append(texts[0])
            rows["text_b"].append(texts[1] if len(texts) > 1 else None)
            rows["label"].append(label.strip() if isinstance(label, str) else label)
        return rows

    def prepare(self, splits, tokenizer=None, model_config=None):
        """Fix the label ids (from a trained model's id2label, else from the data) and map the labels to them."""
        values = [v for split in splits.values() for v in split["label"]]
        kind = label_kind(values)
        if kind == "float":
            self.is_regression, self.score_name, self.label_names = True, "pearson", None
            return splits.map(lambda row: {"label": float(row["label"])}, desc="Labels")
        trained = trained_labels(model_config) if model_config is not None else None
        if kind == "int":
            ids = sorted({int(float(v)) for v in values})
            if ids[0] < 0:
                raise UsageError(f"Label {ids[0]} is negative; whole-number labels must be ids from 0.")
            if self.label_names is None:
                count = max(ids[-1] + 1, len(trained or []))
                self.label_names = tuple(trained or [str(i) for i in range(count)])
            if ids[-1] >= len(self.label_names):
                raise UsageError(f"Label id {ids[-1]} is out of range for {len(self.label_names)} labels.")
            return splits.map(lambda row: {"label": int(float(row["label"]))}, desc="Labels")
        names = sorted({str(v) for v in values})
        if trained:
            unknown = [n for n in names if n not in trained]
            if unknown:
                raise UsageError(
                    f"The data has label {unknown[0]!r}, which the model's head does not know (its labels: "
                    f"{', '.join(trained)})."
                )
            self.label_names = tuple(trained)
        elif self.label_names is None or not set(names) <= set(self.label_names):
            self.label_names = tuple(names)
        index = {name: i for i, name in enumerate(self.label_names)}
        if len(self.label_names) < 2:
            raise UsageError(f"The data has only one label ({self.label_names[0]!r}); classification needs two.")
        return splits.map(lambda row: {"label": index[str(row["label"])]}, desc="Labels")

    def _encode(self, splits, tokenizer, max_length: int):
        def encode(batch):
            texts = [batch["text_a"]] + ([batch["text_b"]] if len(self.text_columns) == 2 else [])
            return tokenizer(*texts, truncation=True, max_length=max_length)

        return splits.map(encode, batched=True, remove_columns=["text_a", "text_b"], desc="Tokenizing")

    def train_dataset(self, splits, tokenizer, max_length: int):
        return self._encode(splits["train"], tokenizer, max_length)

    def collator(self, tokenizer):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def text_rows(self, dataset, limit: int) -> list[tuple[str, ...]]:
        dataset = dataset.select(range(min(limit, len(dataset))))
        if len(self.text_columns) == 2:
            return list(zip(dataset["text_a"], dataset["text_b"]))
        return [(t,) for t in dataset["text_a"]]

    def data_source(self) -> dict:
        info = {"eval_rows": self.max_eval_samples, "train_rows": self.max_train_samples}
        if self.dataset:
            return {**info, "kind": "hub", "path": self.dataset, "config": self.dataset_config,
                    "split": self.validation_split}  # fmt: skip
        return {**info, "kind": "files", "path": self.validation_file or self.train_file}

    # -- metrics --------------------------------------------------------------------------------------
    def evaluate(self, model, tokenizer, splits, max_length: int) -> dict:
        import inspect

        from ..evaluation import torch_logits_fn

        accepted = set(inspect.signature(model.forward).parameters)
        return self.evaluate_logits_fn(torch_logits_fn(model), tokenizer, splits, max_length, accepted)

    def evaluate_logits_fn(self, logits_fn, tokenizer, splits, max_length: int, input_names=None) -> dict:
        from ..evaluation import predict

        encoded = self._encode(splits["validation"], tokenizer, max_length)
        logits = predict(logits_fn, encoded, tokenizer, 64, input_names)
        return {k: round(v, 6) for k, v in classification_metrics(logits, np.asarray(encoded["label"]),
                                                                    self.is_regression).items()}  # fmt: skip

    def score(self, metrics: dict) -> float:
        return metrics.get(self.score_name, float("nan"))

    # -- cards ----------------------------------------------------------------------------------------
    def card(self) -> dict:
        source = f"`{self.dataset}`" if self.dataset else "the user's own data"
        return {
            "pipeline_tag": self.pipeline_tag,
            "what": "text regressor" if self.is_regression else "text classifier",
            "for": source,
            "predicts": (
                "It predicts a number."
                if self.is_regression
                else f"It predicts one of {len(self.label_names or [])} labels: {', '.join(self.label_names or [])}."
            ),
            "dataset_name": self.dataset or "user data",
            "metrics": ["pearson", "spearmanr", "mse"] if self.is_regression else ["accuracy", "f1"],
            "example": ("An example sentence.",) * len(self.text_columns),
            "labels": dict(enumerate(self.label_names or [])),
            "regression": self.is_regression,
            "tags": [],
            "task_line": "Trained on one dataset; inputs are truncated to the tokenizer length used in training, "
            "and other domains or languages are untested.",
        }


def trained_labels(config) -> list[str] | None:
    """The label names of a checkpoint trained as a sequence classifier, or None (no trained head)."""
    architectures = getattr(config, "architectures", None) or []
    if not any("SequenceClassification" in arch for arch in architectures):
        return None
    labels = [config.id2label[i] for i in sorted(config.id2label)]
    # transformers' placeholder names (LABEL_0, ...) say nothing about the data: not a trained labelling.
    if all(label == f"LABEL_{i}" for i, label in enumerate(labels)):
        return None
    return labels


def label_kind(values: list) -> str:
    """'int' for whole-number ids (as numbers or digit strings), 'float' for other numbers, else 'str'."""
    kinds = set()
    for value in values:
        if isinstance(value, bool):
            kinds.add("str")
        elif isinstance(value, int):
            kinds.add("int")
        elif isinstance(value, float):
            kinds.add("int" if value.is_integer() else "float")
        else:
            text = str(value).strip()
            try:
                number = float(text)
            except ValueError:
                kinds.add("str")
                continue
            kinds.add("int" if number.is_integer() and text.lstrip("-").isdigit() else "float")
    if "str" in kinds:
        return "str"
    return "float" if "float" in kinds else "int"


def classification_metrics(logits: np.ndarray, labels: np.ndarray, regression: bool) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score

    if regression:
        preds = logits.reshape(len(logits), -1)[:, 0].astype(np.float64)
        refs = labels.astype(np.float64)
        constant = len(preds) < 2 or np.ptp(preds) == 0 or np.ptp(refs) == 0
        return {
            "pearson": 0.0 if constant else float(pearsonr(preds, refs)[0]),
            "spearmanr": 0.0 if constant else float(spearmanr(preds, refs)[0]),
            "mse": float(np.mean((preds - refs) ** 2)),
        }
    preds = logits.argmax(axis=-1)
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "f1": float(f1_score(labels, preds, average="macro", zero_division=0.0)),
    }


def read_records(path: Path) -> list[dict]:
    """Rows of a csv, tsv, json (list, columns or lines), jsonl or parquet file, as dicts."""
    from ..data.loading import _json_records, read_text, table_records

    if not path.is_file():
        raise UsageError(f"Data file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            records = pq.read_table(path).to_pylist()
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise UsageError(f"Data file {path} is not a readable parquet file ({err}).") from None
    else:
        if suffix in (".json", ".jsonl"):
            text = read_text(path)
            records = _json_records(text, path) if text.strip() else []
        else:
            records = table_records(path)
    if not records:
        raise UsageError(f"Data file {path} holds no rows.")
    return records
