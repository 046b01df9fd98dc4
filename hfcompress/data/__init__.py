"""GLUE tasks, data loading, metrics, and a synthetic offline task."""

from hfcompress.data.loading import load_glue
from hfcompress.data.metrics import compute_glue_metrics, predictions_from_logits
from hfcompress.data.synthetic import write_sentiment_task
from hfcompress.data.tasks import GLUE_TASKS, GlueTask, get_task

__all__ = [
    "GLUE_TASKS",
    "GlueTask",
    "compute_glue_metrics",
    "get_task",
    "load_glue",
    "predictions_from_logits",
    "write_sentiment_task",
]
