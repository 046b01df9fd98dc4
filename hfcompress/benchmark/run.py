"""`hfcompress benchmark`: every model measured in one process, in one run, latency interleaved over rounds.

Each model is loaded once (PyTorch, ONNX Runtime, bitsandbytes or torchao folders alike), evaluated on the task,
and described (parameters, size on disk, sparsity, memory). Latency is then taken in rounds, A, B, C, A, B, C ...,
so a change in the machine's load hits every model alike; a round's figure is the median of `repeats` calls, and
the reported figure is the median over rounds with the min-max spread. Speed-ups are per-round ratios against the
first model (the baseline), then their median and spread.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

import torch

from ..errors import UsageError
from ..measure import memory_bytes, weights_size_bytes

logger = logging.getLogger("hfcompress")
SPREAD_WARNING = 0.25  # (max - min) / median of a model's latency over rounds above this is worth a warning
BUSY_SHARE = 0.2  # other processes using more than this share of the CPUs before we start: the machine is not idle


def check_models(names: list[str], task, trust_remote_code: bool = False) -> list[str]:
    """Every model exists and suits the task, checked before any of them loads (one sentence each)."""
    from ..models import check_model_available, load_config
    from ..quantization.quantize import quantized_backend

    if not names:
        raise UsageError("Name at least one model to benchmark: hfcompress benchmark MODEL [MODEL ...] --task T.")
    if len(set(names)) != len(names):
        raise UsageError("A model is named twice; name each once.")
    resolved = []
    for name in names:
        path = check_model_available(name)
        config = load_config(path, trust_remote_code=trust_remote_code)
        task.check_config(config, path)
        if not (Path(path).is_dir() and quantized_backend(path)):
            task.check_trained(config, path)
        resolved.append(path)
    check_memory({p: weights_size_bytes(p) for p in resolved if Path(p).is_dir()}, available_memory_bytes())
    return resolved


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), or None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_memory(sizes: dict[str, int], available: int | None) -> None:
    """Refuse a set of models whose weights alone exceed the free memory: all of them stay loaded for the
    interleaved rounds, so the run would swap or be killed part-way. Sizes on disk are a lower bound."""
    total = sum(sizes.values())
    if available is None or total <= available:
        return
    largest = max(sizes, key=sizes.get)
    raise UsageError(
        f"The {len(sizes)} models' weights take {total / 1e9:.1f} GB on disk, more than the {available / 1e9:.1f} GB "
        f"of free memory, and the benchmark keeps every model loaded to interleave them; benchmark fewer at a "
        f"time (the largest is {largest}, {sizes[largest] / 1e9:.1f} GB)."
    )


class Candidate:
    """One model under test: loaded, with a callable that times it once ({measurement: ms})."""

    def __init__(self, name: str, label: str, task, max_length: int, repeats: int, trust_remote_code: bool = False):
        from ..models import load_config, load_for_task, load_tokenizer
        from ..quantization.quantize import quantized_backend

        self.name, self.label, self.task, self.repeats = name, label, task, repeats
        self.backend = quantized_backend(name) if Path(name).is_dir() else None
        self.config = load_config(name, trust_remote_code=trust_remote_code)
        self.tokenizer = load_tokenizer(name, trust_remote_code)
        if self.backend:
            from ..quantization.run import load_quantized

            self.model = load_quantized(name, self.backend, trust_remote_code)
        else:
            from ..arguments import ModelArguments

            model_args = ModelArguments(model=name, max_seq_length=max_length, trust_remote_code=trust_remote_code)
            self.model, _ = load_for_task(name, task, model_args)
            self.model.eval()
        self.max_length = max_length

    def describe(self, splits) -> dict:
        """The task's metrics and score, parameters, size on disk, sparsity and memory."""
        from ..architecture import count_parameters
        from ..quantization.run import evaluate_quantized, quantized_memory_bytes
        from ..report import read_report

        splits = self.task.prepare(splits, self.tokenizer, self.config)
        logger.info("Evaluating %s on %s", self.name, self.task.name)
        recorded = (read_report(self.name) or {}).get("result") or {} if Path(self.name).is_dir() else {}
        row = {"model": self.name, "label": self.label, "backend": self.backend or "transformers"}
        if self.backend:
            row.update(
                evaluate_quantized(self.model, self.backend, self.tokenizer, self.task, splits, self.max_length)
            )
            row["parameters"] = recorded.get("parameters")
            row["memory_bytes"] = quantized_memory_bytes(self.model, self.backend)
            row["sparsity"] = (recorded.get("sparsity") or {}).get("global")
        else:
            row["metrics"] = self.task.evaluate(self.model, self.tokenizer, splits, self.max_length)
            row.update(self.task.extra_measurements(self.model, self.tokenizer, splits))
            row["parameters"] = count_parameters(self.model)
            row["memory_bytes"] = memory_bytes(self.model)
            row["sparsity"] = linear_sparsity(self.model)
        row["score"] = self.task.score(row["metrics"])
        if Path(self.name).is_dir():
            row["size_bytes"] = weights_size_bytes(self.name)
        else:
            from ..measure import saved_size_bytes

            row["size_bytes"] = saved_size_bytes(self.model)
        return row

    def time_once(self) -> dict[str, float]:
        if self.backend:
            from ..quantization.run import quantized_latency

            return quantized_latency(self.model, self.backend, self.task, self.repeats)
        return self.task.latency(self.model, self.repeats)


def linear_sparsity(model) -> float | None:
    """Fraction of exact zeros in the weights of linear layers (nn.Linear and GPT-2's Conv1D), embeddings aside."""
    zeros = total = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D":
            if isinstance(weight, torch.Tensor) and torch.is_floating_point(weight):
                zeros += int((weight == 0).sum())
                total += weight.numel()
    return round(zeros / total, 4) if total else None


def interleaved_latency(candidates: list[Candidate], rounds: int) -> dict[str, dict]:
    """{model: {measurement: {median, min, max}, "speedup": {measurement: {median, min, max}}}}."""
    samples = {c.name: {} for c in candidates}
    for index in range(rounds):
        logger.info("Latency round %d of %d", index + 1, rounds)
        for candidate in candidates:
            for key, ms in candidate.time_once().items():
                samples[candidate.name].setdefault(key, []).append(ms)
    baseline = samples[candidates[0].name]
    results = {}
    for name, series in samples.items():
        entry = {key: spread(values) for key, values in series.items()}
        entry["speedup"] = {
            key: spread([b / v for b, v in zip(baseline[key], values)])
            for key, values in series.items()
            if key in baseline
        }
        results[name] = entry
    return results


def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4), "max": round(max(values), 4)}


def busy_fraction(seconds: float = 1.0) -> float | None:
    """Share of the machine's CPU time that other processes used over `seconds` (Linux /proc), or None.

    A load average would count this process's own training or evaluation of the last minute as "busy".
    """

    def machine() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
        return sum(fields), fields[3] + fields[4]  # all jiffies, idle + iowait

    def own() -> int:
        with open("/proc/self/stat") as handle:
            parts = handle.read().rsplit(")", 1)[1].split()
        return int(parts[11]) + int(parts[12])  # utime + stime of every thread of this process

    try:
        (total0, idle0), own0 = machine(), own()
        time.sleep(seconds)
        (total1, idle1), own1 = machine(), own()
    except (OSError, ValueError, IndexError):
        return None
    spent = total1 - total0
    if spent <= 0:
        return None
    return round(max(0.0, (spent - (idle1 - idle0) - (own1 - own0)) / spent), 2)


def warnings_for(latency: dict[str, dict], busy: float | None) -> list[str]:
    found = []
    if busy is not None and busy > BUSY_SHARE:
        found.append(f"Other processes used {busy:.0%} of the CPUs when the latency rounds started; latency "
                     "figures from a busy machine are not results: rerun on an idle one.")  # fmt: skip
    for name, entry in latency.items():
        for key, value in entry.items():
            if (
                key != "speedup"
                and value["median"]
                and (value["max"] - value["min"]) / value["median"] > SPREAD_WARNING
            ):
                found.append(f"{name}: {key} varied {value['min']:.2f}-{value['max']:.2f} ms over the rounds "
                             f"(median {value['median']:.2f}); more --rounds or an idle machine help.")  # fmt: skip
    return found


def unique_labels(names: list[str]) -> list[str]:
    """Each model's folder name, with as many parent folders as it takes to tell models apart
    (`a/01-prune`, `b/01-prune`)."""
    parts = [Path(name).parts or (name,) for name in names]
    depth = [1] * len(names)
    while True:
        labels = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        clashing = [i for i, label in enumerate(labels) if labels.count(label) > 1 and depth[i] < len(parts[i])]
        if not clashing:
            return labels
        for i in clashing:
            depth[i] += 1


def run_benchmark(
    names: list[str],
    task,
    output_dir: str | Path,
    rounds: int = 5,
    repeats: int = 10,
    max_length: int = 128,
    overwrite: bool = False,
    trust_remote_code: bool = False,
) -> dict:
    """Measure `names` on `task` and write benchmark.json, benchmark.csv and the charts into `output_dir`."""
    import platform

    from ..outputs import begin_output, commit_output
    from ..pipeline import check_output_dir, load_data
    from .output import print_table, write_files

    if rounds < 1 or repeats < 1:
        raise UsageError(f"--rounds and --latency-runs must be at least 1, got {rounds} and {repeats}.")
    names = check_models(names, task, trust_remote_code)
    final = check_output_dir(output_dir, overwrite, tuple(names))
    splits = load_data(task, need_train=False, train=False)
    staging = begin_output(final, overwrite, resuming=False, resumable=False)
    candidates = [Candidate(name, label, task, max_length, repeats, trust_remote_code)
                  for name, label in zip(names, unique_labels(names))]  # fmt: skip
    rows = [candidate.describe(splits) for candidate in candidates]
    busy = busy_fraction()
    latency = interleaved_latency(candidates, rounds)
    for row in rows:
        row["latency"] = latency[row["model"]]
    setup = task.latency_setup(repeats)
    setup.update(rounds=rounds, repeats=repeats, cpu=platform.processor() or platform.machine(),
                 busy_before=busy, busy_after=busy_fraction())  # fmt: skip
    setup["statistic"] = (f"per round: {setup['statistic']}; reported: the median over {rounds} interleaved rounds "
                          "(min-max)")  # fmt: skip
    result = {
        "task": {
            "name": task.name,
            "score_name": task.score_name,
            "lower_is_better": task.lower_is_better,
            "data": task.data_source(),
        },  # fmt: skip
        "setup": setup,
        "rows": rows,
        "warnings": warnings_for(latency, busy),
    }
    write_files(result, staging)
    final = commit_output(staging, overwrite)
    print_table(result)
    print(f"Wrote {final / 'benchmark.json'}, benchmark.csv and the charts in {final}.")
    return result
