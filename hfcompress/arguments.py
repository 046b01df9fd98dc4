"""Dataclasses shared by the Python API and the CLI (each field becomes a `--flag`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from transformers import TrainingArguments

from .errors import UsageError

DTYPES = ("auto", "float32", "bfloat16", "float16")


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
    dtype: str = field(
        default="float32",
        metadata={"help": "Weights' dtype when loading: auto (as saved), float32, bfloat16 or float16."},
    )
    revision: str | None = field(default=None, metadata={"help": "Hub branch, tag or commit of the model."})
    attn_implementation: str | None = field(
        default=None, metadata={"help": "Attention kernel: eager, sdpa, flash_attention_2 ... (default: the model's)."}
    )

    def __post_init__(self):
        if self.model is None:
            raise UsageError("A model is required: a Hub id, an alias such as minilm, or a local folder.")
        if self.max_seq_length < 8:
            raise UsageError(f"--max-seq-length must be at least 8, got {self.max_seq_length}.")
        if self.dtype not in DTYPES:
            raise UsageError(f"--dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}.")

    def load_kwargs(self) -> dict:
        """from_pretrained arguments for dtype, revision and attention implementation."""
        import torch

        kwargs = {"dtype": "auto" if self.dtype == "auto" else getattr(torch, self.dtype)}
        if self.revision:
            kwargs["revision"] = self.revision
        if self.attn_implementation:
            kwargs["attn_implementation"] = self.attn_implementation
        return kwargs


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
        default=None,
        metadata={
            "help": "A GLUE task (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli), classification (any "
            "text-classification data) or causal-lm (language modelling on raw text)."
        },
    )
    data_dir: str | None = field(
        default=None,
        metadata={"help": "GLUE: local folder in the classic layout (e.g. glue/ with SST-2/train.tsv, dev.tsv)."},
    )
    dataset: str | None = field(
        default=None, metadata={"help": "classification / causal-lm: a Hub dataset, e.g. imdb or wikitext."}
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "The Hub dataset's configuration, e.g. wikitext-2-raw-v1."}
    )
    train_split: str | None = field(default=None, metadata={"help": "Hub dataset split to train on (train)."})
    validation_split: str | None = field(
        default=None, metadata={"help": "Hub dataset split to evaluate on (validation)."}
    )
    train_file: str | None = field(
        default=None,
        metadata={"help": "Training data: csv, tsv, json, jsonl or parquet (causal-lm: also txt)."},
    )
    validation_file: str | None = field(
        default=None,
        metadata={"help": "Evaluation data: csv, tsv, json, jsonl or parquet (causal-lm: also txt, scored exactly)."},
    )
    text_columns: str | None = field(
        default=None, metadata={"help": "classification: one or two text columns, e.g. text or premise,hypothesis."}
    )
    label_column: str | None = field(default=None, metadata={"help": "classification: the label column (label)."})
    text_column: str | None = field(default=None, metadata={"help": "causal-lm: the text column (text)."})
    block_size: int | None = field(
        default=None,
        metadata={"help": "causal-lm: tokens per training block and evaluation window (default: model max, <= 1024)."},
    )
    stride: int | None = field(
        default=None,
        metadata={"help": "causal-lm: tokens the perplexity window moves each step (default: half the block size)."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use a random subset of training rows (causal-lm: the first N blocks)."}
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "Use a random subset of validation rows (causal-lm: the first N rows or lines)."},
    )
    latency_runs: int = field(
        default=10,
        metadata={
            "help": "Timed runs per latency measurement (classifiers: batch 1 and 32 at seq 128; causal LMs: "
            "prefill 1 x 128 and decode of 64 tokens); 0 skips."
        },
    )

    def __post_init__(self):
        from .tasks import TASK_CHOICES, task_from_args

        if self.task is None:
            raise UsageError(f"--task is required (one of {', '.join(TASK_CHOICES)}).")
        if self.latency_runs < 0:
            raise UsageError(f"--latency-runs must be 0 or more, got {self.latency_runs}.")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be a positive number, not {value}.")
        self.task_obj = task_from_args(self)  # every check of the task's own flags, before any work
        self.task = self.task_obj.name


@dataclass
class FinetuneArguments(TrainingArguments):
    """`TrainingArguments` with hfcompress's defaults: no pickled checkpoints unless asked for."""

    save_strategy: str = field(
        default="no", metadata={"help": "Checkpoint strategy during training: no, steps, epoch or best."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Write into an existing, non-empty output directory."}
    )
    early_stopping_patience: int = field(
        default=0,
        metadata={
            "help": "Evaluate the task's score on the validation data after every epoch, keep the best epoch's "
            "weights, and stop after this many epochs without improvement (0: off)."
        },
    )
    l1_weight: float = field(
        default=0.0,
        metadata={
            "help": "L1 sparsity regularization: add this weight times sum |w| over the prunable weights (the "
            "Linear layers inside the transformer blocks, or those gradual pruning's --modules picks; not "
            "embeddings, norms, biases or the classifier) to the training loss, so magnitude pruning later finds "
            "more weights near zero. Logged as l1_penalty (the unweighted sum, which covers millions of weights in "
            "a base-size model: keep the weight small). 0: off."
        },
    )

    def __post_init__(self):
        if self.output_dir is None:
            raise UsageError("--output-dir is required.")
        if self.early_stopping_patience < 0:
            raise UsageError(f"--early-stopping-patience must be 0 or more, got {self.early_stopping_patience}.")
        if self.learning_rate < 0:
            raise UsageError(f"--learning_rate must be 0 or more, got {self.learning_rate}.")
        if not (math.isfinite(self.l1_weight) and self.l1_weight >= 0):
            raise UsageError(f"--l1-weight must be a finite number, 0 (off) or more, got {self.l1_weight}.")
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}.")
        super().__post_init__()
