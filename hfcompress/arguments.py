"""Dataclasses shared by the Python API and the CLI (each field becomes a `--flag`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from .data import get_task
from .errors import UsageError


@dataclass
class ModelArguments:
    model: str = field(
        default=None,
        metadata={"help": "Hub id, alias (bert-base, distilbert, roberta-base, minilm) or local model folder."},
    )
    max_seq_length: int = field(default=128, metadata={"help": "Truncate inputs to this many tokens."})
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow model code from the Hub to run (off unless you trust the source)."},
    )

    def __post_init__(self):
        if self.model is None:
            raise UsageError("A model is required: a Hub id, an alias such as minilm, or a local folder.")
        if self.max_seq_length < 8:
            raise UsageError(f"--max-seq-length must be at least 8, got {self.max_seq_length}.")


@dataclass
class StudentArguments:
    student: str | None = field(
        default=None,
        metadata={"help": "Distil into this model (Hub id, alias or folder) instead of a layer subset."},
    )
    student_layers: str | None = field(
        default=None,
        metadata={
            "help": "Build the student from the teacher, keeping N evenly spaced layers ('6') or the listed ones "
            "('0,2,4,7,9,11'). Default when no --student: half the teacher's layers."
        },
    )

    def __post_init__(self):
        if self.student and self.student_layers:
            raise UsageError("Pass either --student or --student-layers, not both.")


@dataclass
class DataArguments:
    task: str = field(
        default=None, metadata={"help": "GLUE task: cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte or wnli."}
    )
    data_dir: str | None = field(
        default=None,
        metadata={"help": "Local GLUE folder in the classic layout (e.g. glue/ with SST-2/train.tsv, dev.tsv)."},
    )
    train_file: str | None = field(default=None, metadata={"help": "Training data as csv, tsv or json."})
    validation_file: str | None = field(default=None, metadata={"help": "Validation data as csv, tsv or json."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use a random subset of training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use a random subset of validation rows."})
    latency_runs: int = field(
        default=10,
        metadata={"help": "Timed runs per CPU latency measurement (batch 1 and 32, seq 128); 0 skips."},
    )

    def __post_init__(self):
        if self.task is None:
            raise UsageError("--task is required (one of cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli).")
        self.task = get_task(self.task).name
        if self.latency_runs < 0:
            raise UsageError(f"--latency-runs must be 0 or more, got {self.latency_runs}.")


@dataclass
class FinetuneArguments(TrainingArguments):
    """`TrainingArguments` with hfcompress's defaults: no pickled checkpoints unless asked for."""

    save_strategy: str = field(
        default="no", metadata={"help": "Checkpoint strategy during training: no, steps, epoch or best."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Write into an existing, non-empty output directory."}
    )

    def __post_init__(self):
        if self.output_dir is None:
            raise UsageError("--output-dir is required.")
        super().__post_init__()
