"""Compare any set of models on one task: metric, size, sparsity, memory and interleaved latency, with charts."""

from .run import run_benchmark

__all__ = ["run_benchmark"]
