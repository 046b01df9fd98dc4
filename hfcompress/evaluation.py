"""GLUE dev-set evaluation of any model that maps a tokenized batch to logits."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .data import GlueTask, compute_glue_metrics, get_task


def tokenize_splits(splits, tokenizer, task: GlueTask, max_length: int = 128):
    """Tokenize the task's text columns of every split, keeping `label`."""

    def encode(batch):
        texts = [batch[column] for column in task.text_columns]
        return tokenizer(*texts, truncation=True, max_length=max_length)

    return splits.map(encode, batched=True, remove_columns=list(task.text_columns), desc="Tokenizing")


def split_suffix(split: str) -> str:
    """'validation' -> '', 'validation_matched' -> '_matched' (MNLI reports both)."""
    return split.removeprefix("validation")


def torch_logits_fn(model) -> Callable[[dict], np.ndarray]:
    device = next(model.parameters()).device
    model.eval()

    def logits(batch: dict) -> np.ndarray:
        with torch.inference_mode():
            out = model(**{k: v.to(device) for k, v in batch.items()})
        return out.logits.float().cpu().numpy()

    return logits


def predict(logits_fn, dataset, tokenizer, batch_size: int = 64, input_names: set[str] | None = None) -> np.ndarray:
    from transformers import DataCollatorWithPadding

    collate = DataCollatorWithPadding(tokenizer, return_tensors="pt")
    columns = [c for c in dataset.column_names if c != "label" and (input_names is None or c in input_names)]
    outputs = []
    for start in range(0, len(dataset), batch_size):
        rows = dataset.select(range(start, min(start + batch_size, len(dataset))))
        batch = collate([{c: row[c] for c in columns} for row in rows])
        outputs.append(logits_fn(dict(batch)))
    return np.concatenate(outputs)


def evaluate_on_glue(
    logits_fn,
    tokenizer,
    task: str | GlueTask,
    splits,
    max_length: int = 128,
    batch_size: int = 64,
    input_names: set[str] | None = None,
) -> dict[str, float]:
    """Official GLUE metrics on each validation split: {"accuracy": ...} or MNLI's "accuracy_matched", ..."""
    task = get_task(task) if isinstance(task, str) else task
    metrics = {}
    for split in task.validation_splits:
        if split not in splits:
            continue
        encoded = tokenize_splits(splits[split], tokenizer, task, max_length)
        logits = predict(logits_fn, encoded, tokenizer, batch_size, input_names)
        scores = compute_glue_metrics(task, logits, np.asarray(splits[split]["label"]))
        metrics.update({f"{name}{split_suffix(split)}": round(value, 6) for name, value in scores.items()})
    return metrics


def evaluate_model(model, tokenizer, task, splits, max_length: int = 128, batch_size: int = 64) -> dict[str, float]:
    import inspect

    accepted = set(inspect.signature(model.forward).parameters)
    return evaluate_on_glue(torch_logits_fn(model), tokenizer, task, splits, max_length, batch_size, accepted)


def glue_score(metrics: dict[str, float]) -> float:
    """One number per task as the GLUE leaderboard averages them: the mean of the task's metrics."""
    return round(float(np.mean(list(metrics.values()))), 6) if metrics else float("nan")
