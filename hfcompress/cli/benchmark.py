"""hfcompress benchmark MODEL [MODEL ...] --task T [data options] --output-dir OUT [--rounds N]"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..arguments import DataArguments
from .common import parse_dataclasses

DESCRIPTION = (
    "Measure several models in one process and one run: the task's metric, parameters, size on disk, sparsity, "
    "memory and CPU latency (batch 1 and 32 for classifiers; prefill and decode tokens/s for causal LMs), the "
    "latency interleaved over rounds (A, B, A, B ...) with median and spread, speed-ups against the first model. "
    "Writes benchmark.json, benchmark.csv and PNG charts (metric against latency and against size, Pareto front "
    "marked). PyTorch, ONNX Runtime, bitsandbytes and torchao folders alike."
)


@dataclass
class BenchmarkArguments:
    models: list[str] = field(default_factory=list, metadata={"help": "Models to compare; the first is the baseline."})
    output_dir: str = field(default=None, metadata={"help": "Where benchmark.json, .csv and the charts go."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Replace an existing output folder."})
    rounds: int = field(default=5, metadata={"help": "Interleaved latency rounds; figures are medians over them."})
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: torch's own choice)."})
    max_seq_length: int = field(default=128, metadata={"help": "Truncate evaluation inputs to this many tokens."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow model code from the Hub to run."})


TYPES = (BenchmarkArguments, DataArguments)


def parse(argv: list[str]):
    argv = list(argv)
    models = []
    while argv and not argv[0].startswith("-"):
        models.append(argv.pop(0))
    if models:
        argv = ["--models", *models, *argv]
    return parse_dataclasses(argv, TYPES, "benchmark", DESCRIPTION)


def run(argv: list[str]) -> int:
    import torch

    from ..benchmark import run_benchmark
    from ..errors import UsageError
    from ..pipeline import as_task

    bench, data_args = parse(argv)
    if not bench.output_dir:
        raise UsageError("--output-dir is required: the folder for benchmark.json, benchmark.csv and the charts.")
    if bench.threads is not None:
        if bench.threads < 1:
            raise UsageError(f"--threads must be at least 1, got {bench.threads}.")
        torch.set_num_threads(bench.threads)
    run_benchmark(bench.models, as_task(data_args), bench.output_dir, bench.rounds, data_args.latency_runs or 1,
                  bench.max_seq_length, bench.overwrite_output_dir, bench.trust_remote_code)  # fmt: skip
    return 0
