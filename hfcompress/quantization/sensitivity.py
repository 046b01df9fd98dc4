"""The sensitivity scan behind `quantize --max-drop`: which layers can be quantized within a metric budget.

Each quantizable layer is quantized alone and the task metric measured on a few rows (the train split's when
the data has one, so the dev score that the report gives is not the one the choice was fitted to); layers are
then taken from the least sensitive up, and the largest such prefix whose measured drop (all of its layers
quantized together) stays within `max_drop` is chosen by bisection. The rest stay in full precision.

The drop is in accuracy points ((before - after) x 100) for metrics where higher is better, and a relative
rise (after / before - 1) for perplexity.
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from ..errors import UsageError
from .configs import BnbConfig, OnnxConfig, OnnxStaticInt8Config, TorchaoConfig

logger = logging.getLogger("hfcompress")


def metric_drop(task, baseline: float, value: float) -> float:
    if task.lower_is_better:
        return value / baseline - 1.0
    return (baseline - value) * 100.0


def scan_splits(task, splits, samples: int):
    """({validation split name: first `samples` rows}, name of the split they came from)."""
    from datasets import Dataset

    from ..tasks import TaskType

    source = "train" if "train" in splits else next(s for s in task.validation_splits if s in splits)
    rows = splits[source]
    if task.kind == TaskType.CAUSAL_LM:
        lines = (
            [t for t in rows["text"] for t in t.splitlines()] if source == "train" else rows["text"][0].splitlines()
        )
        lines = [line for line in lines if line.strip()][:samples]
        subset = Dataset.from_dict({"text": ["\n".join(lines)]})
    else:
        subset = rows.select(range(min(samples, len(rows))))
    return {name: subset for name in task.validation_splits}, source


def choose(units: list[str], sensitivity: dict[str, float], measure_drop, max_drop: float) -> tuple[list[str], float]:
    """The largest prefix of `units` (least sensitive first) whose measured drop is within `max_drop`.

    `measure_drop(names)` quantizes exactly `names` and returns the drop. Bisection assumes that quantizing more
    layers never helps, which holds closely enough that the chosen set is always measured, never assumed.
    """
    order = sorted(units, key=lambda u: (sensitivity[u], units.index(u)))
    drops = {0: 0.0}

    def drop_of(k: int) -> float:
        if k not in drops:
            drops[k] = measure_drop(order[:k])
        return drops[k]

    if drop_of(len(order)) <= max_drop:
        return order, drops[len(order)]
    good, bad = 0, len(order)
    while bad - good > 1:
        middle = (good + bad) // 2
        if drop_of(middle) <= max_drop:
            good = middle
        else:
            bad = middle
    return order[:good], drops[good]


def run_scan(model_dir, config, tokenizer, task, splits, max_length: int = 128, calibration_texts=None,
             trust_remote_code: bool = False, progress: bool = True) -> dict:  # fmt: skip
    """Scan, then add the layers left out to `config.excluded_modules`; returns what the report records."""
    from tqdm.auto import tqdm

    if task is None or splits is None:
        raise UsageError("--max-drop measures the task metric layer by layer; pass --task and its data.")
    subset, source = scan_splits(task, splits, config.scan_samples)
    scorer = _scorer(model_dir, config, tokenizer, task, subset, max_length, calibration_texts, trust_remote_code)
    with scorer as score:
        units = [u for u in score.units if u not in set(config.excluded_modules)]
        if not units:
            raise UsageError("Every quantizable layer is already excluded; there is nothing to scan.")
        baseline = score([])
        sensitivity = {}
        for unit in tqdm(units, desc="Sensitivity scan", disable=not progress):
            sensitivity[unit] = round(metric_drop(task, baseline, score([unit])), 6)
        chosen, drop = choose(units, sensitivity, lambda names: metric_drop(task, baseline, score(names)),
                              config.max_drop)  # fmt: skip
    kept = [u for u in units if u not in set(chosen)]
    config.excluded_modules = sorted(set(config.excluded_modules) | set(kept))
    unit = "relative perplexity rise" if task.lower_is_better else "accuracy points"
    logger.info("Sensitivity scan: %d of %d layers quantized, drop %.4g %s on %d %s rows (budget %g).",
                len(chosen), len(units), drop, unit, config.scan_samples, source, config.max_drop)  # fmt: skip
    return {"max_drop": config.max_drop, "drop_unit": unit, "rows": config.scan_samples, "split": source,
            "baseline": baseline, "layers": sensitivity, "quantized": sorted(chosen), "kept": kept,
            "drop": round(drop, 6), "measurements": score.calls}  # fmt: skip


def _scorer(model_dir, config, tokenizer, task, subset, max_length, calibration_texts, trust_remote_code):
    if isinstance(config, OnnxConfig):
        return OnnxScorer(model_dir, config, tokenizer, task, subset, max_length, calibration_texts)
    if isinstance(config, TorchaoConfig):
        return TorchaoScorer(model_dir, config, tokenizer, task, subset, max_length, trust_remote_code)
    if isinstance(config, BnbConfig):
        return BnbScorer(model_dir, config, tokenizer, task, subset, max_length, trust_remote_code)
    raise UsageError(f"--max-drop does not support {type(config).__name__}.")


class _Scorer:
    """`scorer(names)`: the task score with exactly the layers `names` quantized. A context manager."""

    units: list[str]
    calls = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, names: list[str]) -> float:
        self.calls += 1
        return self.task.score(self.evaluate(names))


class OnnxScorer(_Scorer):
    """Exports and fuses once; each call quantizes the graph with every other weight node excluded."""

    def __init__(self, model_dir, config, tokenizer, task, subset, max_length, calibration_texts):
        self.args = (model_dir, config, tokenizer, calibration_texts, max_length)
        self.task, self.subset, self.tokenizer, self.max_length = task, subset, tokenizer, max_length
        self.config = config

    def __enter__(self):
        from .onnx_export import export_onnx, input_names, load_for_export
        from .onnx_runtime import calibration_feeds, optimize_graph
        from .partial import onnx_weight_nodes

        model_dir, config, tokenizer, calibration_texts, max_length = self.args
        self._tmp = tempfile.TemporaryDirectory(prefix="hfcompress-scan-")
        tmp = Path(self._tmp.name)
        model = load_for_export(model_dir)
        self.names = input_names(model, tokenizer)
        self.graph = export_onnx(model, self.names, tmp / "exported.onnx", config.opset, str(model_dir))
        if config.optimize:
            optimize_graph(self.graph, tmp / "optimized.onnx", model.config)
            self.graph = tmp / "optimized.onnx"
        self.model_config = model.config
        del model
        self.feeds = None
        if isinstance(config, OnnxStaticInt8Config):
            rows = list(calibration_texts or [])[: config.calibration_samples]
            if not rows:
                raise UsageError("onnx-int8-static calibrates on the task's train split; pass calibration texts.")
            self.feeds = calibration_feeds(tokenizer, rows, self.names, max_length)
        self.nodes = onnx_weight_nodes(self.graph)
        self.units = sorted(set(self.nodes.values()), key=list(self.nodes.values()).index)
        return self

    def __exit__(self, *exc):
        self._tmp.cleanup()
        return False

    def evaluate(self, names: list[str]) -> dict:
        from .onnx_runtime import OrtSequenceClassifier, make_session, quantize_graph
        from .partial import nodes_for_modules

        if names:
            target = Path(self._tmp.name) / f"scan-{self.calls}.onnx"
            exclude = nodes_for_modules(self.nodes, set(self.units) - set(names))
            quantize_graph(self.graph, target, self.config, self.feeds, exclude)
        else:
            target = self.graph
        model = OrtSequenceClassifier(make_session(target), self.model_config)
        try:
            return self.task.evaluate_logits_fn(model, self.tokenizer, self.subset, self.max_length, set(self.names))
        finally:
            if names:
                target.unlink()


class TorchaoScorer(_Scorer):
    """One fp32 model in memory; each call quantizes the chosen Linear layers in place, then puts them back."""

    def __init__(self, model_dir, config, tokenizer, task, subset, max_length, trust_remote_code):
        from .bnb import check_quantizable
        from .torchao import load_torchao, torchao_config

        self.task, self.subset, self.tokenizer, self.max_length = task, subset, tokenizer, max_length
        self.units = check_quantizable(str(model_dir), config, trust_remote_code)["quantized"]
        self.model = load_torchao(model_dir, dtype=torch.float32, trust_remote_code=trust_remote_code)
        self.quant = torchao_config(config, []).quant_type

    def evaluate(self, names: list[str]) -> dict:
        with self._quantized(names):
            return self.task.evaluate(self.model, self.tokenizer, self.subset, self.max_length)

    @contextmanager
    def _quantized(self, names: list[str]):
        from torchao.quantization import quantize_

        chosen = set(names)
        originals = {}
        for name in chosen:
            parent_name, _, attr = name.rpartition(".")
            parent = self.model.get_submodule(parent_name)
            module = getattr(parent, attr)
            originals[name] = (parent, attr, module, module.weight)
        if chosen:
            quantize_(self.model, self.quant, filter_fn=lambda module, fqn: fqn in chosen)
        try:
            yield
        finally:
            for parent, attr, module, weight in originals.values():
                setattr(parent, attr, module)
                module._parameters["weight"] = weight


class BnbScorer(_Scorer):
    """bitsandbytes quantizes while loading, so each call loads the model with every other layer skipped.

    That is one load per measurement: fine for models that load in seconds, slow for billions of parameters.
    """

    def __init__(self, model_dir, config, tokenizer, task, subset, max_length, trust_remote_code):
        from .bnb import check_quantizable

        self.task, self.subset, self.tokenizer, self.max_length = task, subset, tokenizer, max_length
        self.model_dir, self.config, self.trust = model_dir, config, trust_remote_code
        self.plan = check_quantizable(str(model_dir), config, trust_remote_code)
        self.units = self.plan["quantized"]

    def evaluate(self, names: list[str]) -> dict:
        from .bnb import bitsandbytes_config, load_bnb, quiet_warnings

        if names:
            skip = sorted(set(self.plan["skip_patterns"]) | (set(self.units) - set(names)))
            model = load_bnb(self.model_dir, bitsandbytes_config(self.config, skip), self.trust)
        else:
            model = load_bnb(self.model_dir, None, self.trust)
        with quiet_warnings():
            return self.task.evaluate(model, self.tokenizer, self.subset, self.max_length)
