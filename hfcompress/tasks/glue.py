"""The nine GLUE tasks as a task kind: the Hub's nyu-mll/glue, a classic GLUE folder, or files in its columns."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data import GlueTask as GlueSpec
from ..data import get_task as get_glue_spec
from ..errors import UsageError
from .base import Task, TaskType

GLUE_NAMES = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP", "mnli": "MNLI",
              "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI"}  # fmt: skip
TASK_TEXT = {
    "cola": "whether an English sentence is grammatically acceptable",
    "sst2": "the sentiment (negative or positive) of a movie-review sentence",
    "mrpc": "whether two news sentences are paraphrases",
    "stsb": "the semantic similarity of two sentences, on a 0 to 5 scale",
    "qqp": "whether two Quora questions ask the same thing",
    "mnli": "whether a premise entails, contradicts or is neutral to a hypothesis",
    "qnli": "whether a sentence answers a question",
    "rte": "whether one sentence entails another",
    "wnli": "whether a sentence with a pronoun substituted is entailed by the original",
}
EXAMPLES = {
    "cola": ("The book was written by John.",),
    "sst2": ("A gripping, beautifully acted film.",),
    "qqp": ("How do I learn Python quickly?", "What is the fastest way to learn Python?"),
    "qnli": ("Where is the Eiffel Tower?", "The Eiffel Tower stands in Paris."),
    "mnli": ("A man is playing a guitar on stage.", "A person is performing music."),
}
PAIR_EXAMPLE = ("The company posted record profits this quarter.", "Profits at the company hit a record high.")


@dataclass
class GlueTaskConfig(Task):
    """One GLUE task (`task="sst2"`), read from the Hub, a classic GLUE folder (`data_dir`) or files."""

    task: str = "sst2"
    data_dir: str | None = None
    train_file: str | None = None
    validation_file: str | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    spec: GlueSpec = field(init=False, repr=False)

    kind = TaskType.GLUE
    pipeline_tag = "text-classification"
    score_name = "GLUE score"

    def __post_init__(self):
        self.spec = get_glue_spec(self.task)
        self.task = self.spec.name
        if self.data_dir and (self.train_file or self.validation_file):
            raise UsageError("Pass either --data-dir or --train-file/--validation-file, not both.")

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def num_labels(self) -> int:
        return self.spec.num_labels

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.spec.label_names

    def info(self) -> dict:
        return {"kind": self.kind.value, "name": self.name, "lower_is_better": False, "score": "mean of GLUE metrics"}

    # -- models ---------------------------------------------------------------------------------------
    def auto_class(self):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def check_config(self, config, name: str) -> None:
        from .classification import refuse_causal_lm

        refuse_causal_lm(config, name, self.name)

    def model_kwargs(self) -> dict:
        return {"num_labels": self.num_labels}

    def configure_model(self, model) -> None:
        config = model.config
        if self.label_names:
            config.id2label = dict(enumerate(self.label_names))
            config.label2id = {name: i for i, name in enumerate(self.label_names)}
        config.problem_type = "regression" if self.spec.is_regression else "single_label_classification"

    def check_trained(self, config, name: str) -> None:
        from ..models import head_matches

        if not head_matches(config, self.num_labels):
            raise UsageError(
                f"'{name}' has no classification head trained for {self.name} ({self.num_labels} labels); "
                f"fine-tune it first with: hfcompress finetune {name} --task {self.name} --output-dir DIR."
            )

    # -- data -----------------------------------------------------------------------------------------
    def load_splits(self, need_train: bool, train: bool = True):
        from ..data import load_glue

        splits = load_glue(self.spec, data_dir=self.data_dir, train_file=self.train_file,
                           validation_file=self.validation_file, max_train_samples=self.max_train_samples,
                           max_eval_samples=self.max_eval_samples, train=train or need_train)  # fmt: skip
        if need_train and "train" not in splits:
            raise UsageError(
                f"Training needs a train split for {self.name}; pass --train-file or a --data-dir with one."
            )
        if not any(split in splits for split in self.spec.validation_splits):
            raise UsageError(
                f"Evaluation needs a validation split for {self.name}; pass --validation-file or --data-dir."
            )
        for split, rows in splits.items():
            if len(rows) == 0:
                raise UsageError(f"The {split} split of {self.name} holds no rows.")
        return splits

    def train_dataset(self, splits, tokenizer, max_length: int):
        from ..evaluation import tokenize_splits

        return tokenize_splits(splits["train"], tokenizer, self.spec, max_length)

    def collator(self, tokenizer):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def text_rows(self, dataset, limit: int) -> list[tuple[str, ...]]:
        """Up to `limit` rows of input text (one or two strings), for calibration and output checks."""
        dataset = dataset.select(range(min(limit, len(dataset))))
        return list(zip(*[dataset[column] for column in self.spec.text_columns]))

    @property
    def validation_splits(self) -> tuple[str, ...]:
        return self.spec.validation_splits

    def data_source(self) -> dict:
        from pathlib import Path

        from ..data.synthetic import SYNTHETIC_MARKER

        info = {"eval_rows": self.max_eval_samples, "train_rows": self.max_train_samples}
        if self.data_dir:
            root = Path(self.data_dir)
            synthetic = (root / SYNTHETIC_MARKER).exists() or any(root.glob(f"*/{SYNTHETIC_MARKER}"))
            return {**info, "kind": "synthetic" if synthetic else "glue_dir", "path": str(root)}
        if self.train_file or self.validation_file:
            return {**info, "kind": "files", "path": self.validation_file or self.train_file}
        return {**info, "kind": "hub", "path": "nyu-mll/glue"}

    # -- metrics --------------------------------------------------------------------------------------
    def evaluate(self, model, tokenizer, splits, max_length: int) -> dict:
        from ..evaluation import evaluate_model

        return evaluate_model(model, tokenizer, self.spec, splits, max_length=max_length)

    def evaluate_logits_fn(self, logits_fn, tokenizer, splits, max_length: int, input_names=None) -> dict:
        from ..evaluation import evaluate_on_glue

        return evaluate_on_glue(logits_fn, tokenizer, self.spec, splits, max_length, input_names=input_names)

    def score(self, metrics: dict) -> float:
        from ..evaluation import glue_score

        return glue_score(metrics)

    # -- cards ----------------------------------------------------------------------------------------
    def card(self) -> dict:
        spec = self.spec
        example = EXAMPLES.get(spec.name) or (PAIR_EXAMPLE if len(spec.text_columns) == 2 else ("A sentence.",))
        return {
            "pipeline_tag": self.pipeline_tag,
            "what": "text classifier",
            "for": f"GLUE {GLUE_NAMES[spec.name]}",
            "predicts": f"It predicts {TASK_TEXT[spec.name]}.",
            "dataset_name": GLUE_NAMES[spec.name],
            "metrics": list(spec.metrics),
            "example": example,
            "labels": dict(enumerate(spec.label_names)),
            "regression": spec.is_regression,
            "tags": [],
            "task_line": f"Trained for one English task ({GLUE_NAMES[spec.name]}); inputs are truncated to the "
            "tokenizer length used in training, and other domains or languages are untested.",
        }

    def card_data_sentence(self, data: dict) -> str:
        name = GLUE_NAMES[self.name]
        subset = (
            f" (a random subset of {data['eval_rows']} dev rows, so expect noise)" if data.get("eval_rows") else ""
        )
        kind = data["kind"]
        if kind == "hub":
            return (
                f"Data: GLUE {name} from the Hub (`nyu-mll/glue`, config `{self.name}`); results are on its dev "
                f"split{subset}."
            )
        if kind == "glue_dir":
            return (
                f"Data: GLUE {name} read from a local folder in the GLUE layout (`{data['path']}`); results are on "
                f"its dev split{subset}."
            )
        if kind == "files":
            return (
                f"Data: the user's own files in the {name} format (`{data['path']}`), not the official GLUE data; "
                f"results are on that validation file{subset}."
            )
        if kind == "synthetic":
            return (
                "Data: **not GLUE**. The run used the sentiment task hfcompress generates offline (templated "
                "movie-review sentences in the SST-2 layout), so the results show what compression kept, not how "
                f"the model does on real text{subset}."
            )
        return (
            f"Data: not recorded (the run came from the Python API); results are on the {name} dev data it "
            f"got{subset}."
        )

    def card_eval_results(self, metrics: dict, data: dict) -> list[dict]:
        """model-index entries: GLUE results only when the data was the real GLUE (Hub or classic folder)."""
        if data["kind"] not in ("hub", "glue_dir"):
            return []
        from ..cards.metadata import metric_split

        subset = f" on {data['eval_rows']} random dev rows" if data.get("eval_rows") else ""
        rows = []
        for key, value in metrics.items():
            metric, split = metric_split(key)
            rows.append({"dataset_type": "nyu-mll/glue", "dataset_name": f"GLUE {GLUE_NAMES[self.name]}",
                         "dataset_config": self.name, "dataset_split": split, "metric": metric, "value": value,
                         "subset": subset})  # fmt: skip
        return rows

    def card_tags(self, data: dict) -> list[str]:
        return ["glue", self.name] if data["kind"] in ("hub", "glue_dir") else []

    def card_datasets(self, data: dict) -> list[str] | None:
        return ["nyu-mll/glue"] if data["kind"] in ("hub", "glue_dir") else None
