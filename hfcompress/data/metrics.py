"""GLUE dev-set metrics, computed offline exactly as the GLUE benchmark defines them."""

import warnings

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from hfcompress.data.tasks import GlueTask, get_task


def predictions_from_logits(task: str | GlueTask, logits: ArrayLike) -> np.ndarray:
    """Turn model outputs into predictions: argmax of (n, num_labels) logits, or (n,)/(n, 1) scores for stsb.

    Class ids of shape (n,) pass through unchanged.
    """
    task = get_task(task)
    values = np.asarray(logits)
    if task.is_regression:
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1:
            raise ValueError(f"stsb predictions must have shape (n,) or (n, 1), not {values.shape}.")
        return values.astype(np.float64)
    if values.ndim == 2:
        if values.shape[1] != task.num_labels:
            raise ValueError(f"{task.name} logits need shape (n, {task.num_labels}), not {values.shape}.")
        return values.argmax(axis=1)
    if values.ndim != 1:
        raise ValueError(f"{task.name} predictions must be class ids (n,) or logits (n, {task.num_labels}).")
    if values.size and not np.array_equal(values, np.round(values)):
        raise ValueError(f"{task.name} predictions of shape (n,) must be whole class ids.")
    return values.astype(np.int64)


def compute_glue_metrics(
    task: str | GlueTask,
    predictions: ArrayLike,
    references: ArrayLike,
) -> dict[str, float]:
    """Score predictions (class ids, logits, or stsb scores) against gold labels with the task's metrics."""
    task = get_task(task)
    preds = predictions_from_logits(task, predictions)
    refs = np.asarray(references)
    refs = refs.astype(np.float64) if task.is_regression else refs.astype(np.int64)
    if refs.ndim != 1 or len(refs) != len(preds):
        raise ValueError(f"Got {len(preds)} predictions but references of shape {refs.shape}.")
    if len(refs) == 0:
        raise ValueError("There are no predictions to score.")
    scorers = {
        "accuracy": lambda: accuracy_score(refs, preds),
        "f1": lambda: f1_score(refs, preds, pos_label=1, average="binary", zero_division=0.0),
        "matthews_correlation": lambda: _matthews(refs, preds),
        "pearson": lambda: _correlation(pearsonr, preds, refs),
        "spearmanr": lambda: _correlation(spearmanr, preds, refs),
    }
    return {name: float(scorers[name]()) for name in task.metrics}


def _matthews(refs: np.ndarray, preds: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = matthews_corrcoef(refs, preds)
    return 0.0 if np.isnan(value) else value


def _correlation(statistic, preds: np.ndarray, refs: np.ndarray) -> float:
    # A correlation with a constant vector (or fewer than two points) is undefined; score it as 0.
    if len(preds) < 2 or np.ptp(preds) == 0 or np.ptp(refs) == 0:
        return 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = statistic(preds, refs)[0]
    return 0.0 if np.isnan(value) else value
