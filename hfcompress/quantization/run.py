"""`hfcompress quantize`: check the inputs, quantize, then measure the fp32 source and the result side by side."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..arguments import DataArguments, ModelArguments
from ..errors import UsageError
from ..measure import describe_model, torch_latency_ms, weights_size_bytes
from ..models import auto_class_for, check_model_available, load_config, load_tokenizer
from ..pipeline import as_task, check_output_dir, latency_info, latency_runs_of, load_data
from ..report import build_report, print_summary, summary_rows, upstream, write_report
from ..tasks import Task
from ..tasks.causal_lm import lm_latency_ms
from ..tasks.classification import is_causal_lm_config
from .configs import BnbConfig, OnnxConfig, OnnxStaticInt8Config, TorchaoConfig, config_for_method
from .quantize import quantize, require_backend

logger = logging.getLogger("hfcompress")

CHECK_EXAMPLES = 32  # validation rows on which the quantized outputs are compared with PyTorch fp32

# Which methods each optional flag applies to (None: the flag was not given).
_OPTION_METHODS = {
    "per_channel": ("onnx-int8-dynamic", "onnx-int8-static"),
    "optimize": ("onnx-int8-dynamic", "onnx-int8-static"),
    "export_tolerance": ("onnx-int8-dynamic", "onnx-int8-static"),
    "calibration_samples": ("onnx-int8-static",),
    "calibration_method": ("onnx-int8-static",),
    "percentile": ("onnx-int8-static",),
    "int8_threshold": ("bnb-int8",),
    "quant_type": ("bnb-nf4",),
    "double_quant": ("bnb-nf4",),
    "compute_dtype": ("bnb-nf4",),
    "skip_modules": ("bnb-int8", "bnb-nf4", "torchao-int8-weight", "torchao-int8-dynamic", "torchao-int4-weight"),
    "group_size": ("torchao-int4-weight",),
}
_ALL = ("onnx-int8-dynamic", "onnx-int8-static", "bnb-int8", "bnb-nf4", "torchao-int8-weight",
        "torchao-int8-dynamic", "torchao-int4-weight")  # fmt: skip
_OPTION_METHODS.update(exclude=_ALL, max_drop=_ALL, scan_samples=_ALL)


@dataclass
class QuantizeArguments:
    method: str = field(
        default=None,
        metadata={
            "help": "onnx-int8-dynamic, onnx-int8-static (CPU, ONNX Runtime), bnb-int8, bnb-nf4 (bitsandbytes), "
            "torchao-int8-weight, torchao-int8-dynamic or torchao-int4-weight (torchao; safetensors)."
        },
    )
    output_dir: str = field(default=None, metadata={"help": "Folder to write the quantized model and its report to."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Write into an existing, non-empty output directory."}
    )
    per_channel: bool | None = field(
        default=None, metadata={"help": "ONNX: one int8 scale per output channel of each weight (default yes)."}
    )
    optimize: bool | None = field(
        default=None, metadata={"help": "ONNX: fuse attention / LayerNorm / GELU before quantizing (default yes)."}
    )
    export_tolerance: float | None = field(
        default=None, metadata={"help": "ONNX: largest |logit difference| from PyTorch allowed (default 1e-4)."}
    )
    calibration_samples: int | None = field(
        default=None, metadata={"help": "Static int8: train examples used to calibrate (default 50)."}
    )
    calibration_method: str | None = field(
        default=None, metadata={"help": "Static int8: minmax (default), entropy or percentile."}
    )
    percentile: float | None = field(
        default=None, metadata={"help": "Static int8 with --calibration-method percentile: the percentile (99.999)."}
    )
    int8_threshold: float | None = field(
        default=None, metadata={"help": "bnb-int8: LLM.int8() outlier threshold (default 6.0)."}
    )
    quant_type: str | None = field(default=None, metadata={"help": "bnb-nf4: nf4 (default) or fp4."})
    double_quant: bool | None = field(default=None, metadata={"help": "bnb-nf4: quantize the scales too (yes)."})
    compute_dtype: str | None = field(
        default=None, metadata={"help": "bnb-nf4: float32 (default), bfloat16 or float16."}
    )
    skip_modules: str | None = field(
        default=None,
        metadata={"help": "bitsandbytes, torchao: comma-separated module names to keep in full precision."},
    )
    group_size: int | None = field(
        default=None, metadata={"help": "torchao-int4-weight: inputs sharing one scale (default 32)."}
    )
    exclude: str | None = field(
        default=None,
        metadata={
            "help": "Any method: regex on PyTorch module names (re.search) of layers to keep in full precision, "
            "for example 'layer\\.(0|5)\\.' or 'output\\.dense'."
        },
    )
    max_drop: float | None = field(
        default=None,
        metadata={
            "help": "Any method, with --task: scan each layer's sensitivity, then quantize the largest set of the "
            "least sensitive layers whose metric drop stays within this many accuracy points (classifiers) or "
            "this relative perplexity rise (causal LMs: 0.02 = 2%%); the rest stay in full precision."
        },
    )
    scan_samples: int | None = field(
        default=None,
        metadata={"help": "--max-drop: rows of the train split (else the dev split) the scan scores on (256)."},
    )

    def __post_init__(self):
        if self.method is None:
            raise UsageError(
                "--method is required: onnx-int8-dynamic, onnx-int8-static, bnb-int8, bnb-nf4, torchao-int8-weight, "
                "torchao-int8-dynamic or torchao-int4-weight."
            )
        if self.output_dir is None:
            raise UsageError("--output-dir is required.")
        self.config = self.to_config()

    def to_config(self) -> OnnxConfig | BnbConfig:
        """The method's config with the flags given; a flag for another method is refused."""
        config_for_method(self.method)  # an unknown method is refused first
        settings = {}
        for option, methods in _OPTION_METHODS.items():
            value = getattr(self, option)
            if value is None:
                continue
            if self.method not in methods:
                flag = "--" + option.replace("_", "-")
                raise UsageError(f"{flag} only applies to --method {' or '.join(methods)}, not {self.method}.")
            if option == "skip_modules":
                value = [name.strip() for name in value.split(",") if name.strip()]
            settings["threshold" if option == "int8_threshold" else option] = value
        return config_for_method(self.method, **settings)


@dataclass
class QuantizeDataArguments(DataArguments):
    """DataArguments with an optional task: without one, only size, memory and latency are measured."""

    task: str | None = field(
        default=None,
        metadata={
            "help": "Task to calibrate on (static int8) and to evaluate before and after (optional): a GLUE task, "
            "classification or causal-lm."
        },
    )

    def __post_init__(self):
        if self.task is not None:
            super().__post_init__()
            return
        if self.data_dir or self.train_file or self.validation_file or self.dataset:
            raise UsageError("Data was given without --task; pass --task to say which task it holds.")
        self.task_obj = None
        if self.latency_runs < 0:
            raise UsageError(f"--latency-runs must be 0 or more, got {self.latency_runs}.")


def check_model(model_name: str, task: Task | None, quantization, trust_remote_code: bool = False) -> None:
    """Refuse, before loading weights, a model the method or the task cannot take (one sentence each)."""
    config = load_config(model_name, trust_remote_code=trust_remote_code)
    if task is not None:
        task.check_config(config, model_name)
    if getattr(config, "hfcompress_factorized", None) and not isinstance(quantization, OnnxConfig):
        raise UsageError(
            f"'{model_name}' has factorized (low-rank) layers, which {quantization.method} cannot load through "
            "from_pretrained; quantize it with --method onnx-int8-dynamic or onnx-int8-static."
        )
    if is_causal_lm_config(config):
        if isinstance(quantization, OnnxConfig):
            raise UsageError(
                f"'{model_name}' is a causal language model; the ONNX methods export classifiers only for now, so "
                "use --method bnb-int8, bnb-nf4 or a torchao method for it."
            )
        return
    check_classifier(model_name, task, trust_remote_code)


def check_classifier(model_name: str, task: Task | None, trust_remote_code: bool = False) -> None:
    """Refuse, before loading weights, a model whose config says it has no trained classification head."""
    config = load_config(model_name, trust_remote_code=trust_remote_code)
    architectures = getattr(config, "architectures", None) or []
    if not any("SequenceClassification" in arch for arch in architectures):
        task_flag = f" --task {task.name}" if task else " --task TASK"
        raise UsageError(
            f"'{model_name}' has no trained classification head to quantize; fine-tune it first with: "
            f"hfcompress finetune {model_name}{task_flag} --output-dir DIR."
        )
    num_labels = getattr(task, "num_labels", None)
    if num_labels is not None and config.num_labels != num_labels:
        raise UsageError(
            f"'{model_name}' has a {config.num_labels}-label head but {task.name} needs {num_labels} labels."
        )


def run_quantize(
    model_args: ModelArguments,
    data_args: DataArguments,
    quant_args: QuantizeArguments,
    command: str = "",
) -> dict:
    config = quant_args.config
    task = as_task(data_args) if getattr(data_args, "task", None) else None
    latency_runs = latency_runs_of(data_args)
    final_dir = check_output_dir(quant_args.output_dir, quant_args.overwrite_output_dir, (model_args.model,))
    output_dir = final_dir
    require_backend(config)
    if isinstance(config, OnnxStaticInt8Config) and task is None:
        raise UsageError(
            "onnx-int8-static calibrates on examples of a task's train split; pass --task and --data-dir "
            "(or --train-file), or use --method onnx-int8-dynamic, which needs no data."
        )
    if config.max_drop is not None and task is None:
        raise UsageError("--max-drop measures the task metric layer by layer; pass --task and its data.")
    model_name = check_model_available(model_args.model)
    if Path(model_name).is_dir() and Path(model_name).resolve() == output_dir.resolve():
        raise UsageError("--output-dir must be a new folder, not the folder of the model being quantized.")
    check_model(model_name, task, config, model_args.trust_remote_code)
    from .partial import resolve_exclusions

    resolve_exclusions(model_name, config, model_args.trust_remote_code)
    if isinstance(config, (BnbConfig, TorchaoConfig)):
        from .bnb import check_quantizable

        check_quantizable(model_name, config, model_args.trust_remote_code)
    tokenizer = load_tokenizer(model_name, model_args.trust_remote_code)
    splits = None
    if task:
        # Static quantization calibrates on train data, and the sensitivity scan scores on it when there is one.
        static = isinstance(config, OnnxStaticInt8Config) or config.max_drop is not None
        splits = task.prepare(
            load_data(task, need_train=False, train=static),
            tokenizer,
            load_config(model_name, model_args.trust_remote_code),
        )
    calibration = check = None
    if isinstance(config, OnnxStaticInt8Config):
        if "train" not in splits:
            raise UsageError(
                f"onnx-int8-static calibrates on {task.name}'s train split, which this data lacks; pass --train-file "
                "or a --data-dir with one."
            )
        calibration = task.text_rows(splits["train"].shuffle(seed=0), config.calibration_samples)
    if task:
        check = task.text_rows(splits[next(s for s in task.validation_splits if s in splits)], CHECK_EXAMPLES)

    from ..outputs import begin_output, commit_output, replace_paths

    output_dir = begin_output(final_dir, quant_args.overwrite_output_dir, resuming=False, resumable=False)
    logger.info("Quantizing %s with %s", model_name, config.method)
    info = quantize(model_name, config, output_dir, tokenizer, calibration, check, model_args.max_seq_length,
                    model_args.trust_remote_code, task, splits)  # fmt: skip
    if splits is not None and "train" in splits and not isinstance(config, OnnxStaticInt8Config):
        del splits["train"]  # read for the scan only; evaluation and the card use the dev split

    source = measure_source(model_name, tokenizer, task, splits, model_args, latency_runs)
    result = measure_quantized(output_dir, config.backend, config.method, tokenizer, task, splits,
                               model_args.max_seq_length, latency_runs, model_args.trust_remote_code)  # fmt: skip
    result["parameters"] = source["parameters"]  # quantization changes the width of weights, not their number
    result["quantization"] = {k: v for k, v in info.items() if k not in ("output_dir", "backend")}
    step = {"method": "quantization", "model": model_name, "settings": {**config.to_dict(), **_step_details(info)},
            "parameters": result["parameters"], "size_bytes": result["size_bytes"],
            "memory_bytes": result["memory_bytes"]}  # fmt: skip
    lineage, origin = upstream(model_name)
    report = build_report(task if task else None, command, source, result, [*lineage, step],
                          latency_info(latency_runs, task), origin)  # fmt: skip
    if source.get("memory_bytes") and result.get("memory_bytes"):
        report["ratios"]["memory_bytes"] = round(result["memory_bytes"] / source["memory_bytes"], 4)
    report = json.loads(replace_paths(json.dumps(report), output_dir))
    write_report(report, output_dir)
    if task:  # a card describes a model for a task
        from ..cards import write_model_card

        write_model_card(output_dir)
    commit_output(output_dir, quant_args.overwrite_output_dir)
    print_quantization_summary(report)
    return report


def _step_details(info: dict) -> dict:
    keys = ("exporter", "fused_operators", "calibration_samples", "device", "kept_in_full_precision")
    details = {k: info[k] for k in keys if info.get(k)}
    if info.get("sensitivity"):
        scan = info["sensitivity"]
        details["sensitivity_scan"] = {k: scan[k] for k in ("max_drop", "drop_unit", "rows", "split", "drop", "kept")}
    return details


def measure_source(model_name, tokenizer, task, splits, model_args, latency_runs: int) -> dict:
    """The fp32 PyTorch model as compression.json describes it, plus its memory."""
    import torch

    from ..measure import memory_bytes

    config = load_config(model_name, trust_remote_code=model_args.trust_remote_code)
    if getattr(config, "hfcompress_factorized", None):
        from ..factorization import load_model

        model = load_model(model_name, dtype=torch.float32)
    else:
        trust = model_args.trust_remote_code
        model = auto_class_for(config).from_pretrained(model_name, dtype=torch.float32, trust_remote_code=trust).eval()
    entry = {"label": "fp32 (PyTorch)", "model": model_name, "backend": "transformers"}
    if task:
        logger.info("Evaluating the fp32 model on %s", task.name)
        entry["metrics"] = task.evaluate(model, tokenizer, splits, model_args.max_seq_length)
        entry["score"] = task.score(entry["metrics"])
        entry.update(task.extra_measurements(model, tokenizer, splits))
    entry.update(describe_model(model, model_name if Path(model_name).is_dir() else None))
    entry["memory_bytes"] = memory_bytes(model)
    if latency_runs:
        entry["latency_ms"] = _latency(model, task, latency_runs)
    return entry


def _latency(model, task: Task | None, repeats: int) -> dict:
    if task is not None:
        return task.latency(model, repeats)
    return (
        lm_latency_ms(model, repeats)
        if is_causal_lm_config(model.config)
        else torch_latency_ms(model, repeats=repeats)
    )


def measure_quantized(
    directory: str | Path,
    backend: str,
    label: str,
    tokenizer,
    task: Task | None,
    splits,
    max_length: int = 128,
    latency_runs: int = 10,
    trust_remote_code: bool = False,
) -> dict:
    """A quantized folder (ONNX Runtime or bitsandbytes) measured like an fp32 one: metrics, size, memory, latency."""
    entry = {"label": label, "model": str(directory), "backend": backend}
    model = load_quantized(directory, backend, trust_remote_code)
    if task:
        logger.info("Evaluating the %s model on %s", label, task.name)
        entry.update(evaluate_quantized(model, backend, tokenizer, task, splits, max_length))
        entry["score"] = task.score(entry["metrics"])
    entry["memory_bytes"] = quantized_memory_bytes(model, backend)
    entry["size_bytes"] = weights_size_bytes(directory)
    if latency_runs:
        entry["latency_ms"] = quantized_latency(model, backend, task, latency_runs)
    return entry


def load_quantized(directory: str | Path, backend: str, trust_remote_code: bool = False):
    """The model of a folder written by `hfcompress quantize` (ONNX Runtime session, bitsandbytes, torchao)."""
    if backend == "onnxruntime":
        from .onnx_runtime import OrtSequenceClassifier

        return OrtSequenceClassifier.from_pretrained(directory)
    if backend == "torchao":
        from .torchao import load_torchao

        return load_torchao(directory, dtype=_saved_dtype(directory), trust_remote_code=trust_remote_code)
    from .bnb import load_bnb

    return load_bnb(directory, trust_remote_code=trust_remote_code)


def evaluate_quantized(model, backend: str, tokenizer, task: Task, splits, max_length: int) -> dict:
    """{"metrics": ...} and the task's extra measurements (a causal LM's generations) of a quantized model."""
    if backend == "onnxruntime":
        return {"metrics": task.evaluate_logits_fn(model, tokenizer, splits, max_length, set(model.input_names))}
    from .bnb import quiet_warnings

    with quiet_warnings():
        return {"metrics": task.evaluate(model, tokenizer, splits, max_length),
                **task.extra_measurements(model, tokenizer, splits)}  # fmt: skip


def quantized_memory_bytes(model, backend: str) -> int:
    """Bytes of weights in memory, with the backend's scales (not only the logical int8 size)."""
    if backend == "onnxruntime":
        return model.initializer_bytes()
    from ..measure import memory_bytes

    return memory_bytes(model)


def quantized_latency(model, backend: str, task: Task | None, repeats: int) -> dict:
    if backend == "onnxruntime":
        return model.latency_ms(repeats=repeats)
    from .bnb import quiet_warnings

    with quiet_warnings():
        return _latency(model, task, repeats)


def _saved_dtype(directory):
    import json

    import torch

    dtype = json.loads((Path(directory) / "config.json").read_text()).get("dtype") or "float32"
    return getattr(torch, dtype, torch.float32)


def print_quantization_summary(report: dict) -> None:
    """The shared summary table, then what it does not show for quantization: memory, checks, the backend's note."""
    from rich.console import Console

    shown = {row[0] for row in summary_rows(report)}
    print_summary({**report, "task": report["task"] or "no task"}, f"Quantization: {report['result']['label']}")
    console = Console(width=110)
    src, res = report["source"], report["result"]
    if "parameter memory" not in shown and src.get("memory_bytes") and res.get("memory_bytes"):
        console.print(
            f"parameter memory: {src['memory_bytes'] / 1e6:.1f} MB -> {res['memory_bytes'] / 1e6:.1f} MB "
            f"({report['ratios'].get('memory_bytes', float('nan')):.3f}x)"
        )
    quantization = res.get("quantization", {})
    if quantization.get("fused_operators"):
        fused = ", ".join(f"{count} {op}" for op, count in quantization["fused_operators"].items())
        console.print(f"ONNX Runtime fused: {fused}.")
    checks = quantization.get("checks", {})
    if "export_max_abs_diff" in checks:
        console.print(
            f"ONNX Runtime fp32 vs PyTorch on {checks['examples']} real inputs: max |Δlogit| "
            f"{checks['export_max_abs_diff']:.2e} (tolerance {checks['tolerance']:g})."
        )
        console.print(
            f"int8 vs PyTorch fp32: max |Δlogit| {checks['int8_max_abs_diff']:.3f}, "
            f"same prediction on {checks['int8_prediction_agreement']:.0%}."
        )
    if "roundtrip_max_abs_diff" in checks:
        console.print(
            f"Saved and reloaded: max |Δlogit| {checks['roundtrip_max_abs_diff']:.2e}; vs fp32: "
            f"{checks['quantized_max_abs_diff']:.3f}, "
            f"same prediction on {checks['quantized_prediction_agreement']:.0%}."
        )
    scan = quantization.get("sensitivity")
    if scan:
        worst = sorted(scan["layers"].items(), key=lambda item: -item[1])[:3]
        console.print(
            f"Sensitivity scan on {scan['rows']} {scan['split']} rows: {len(scan['quantized'])} of "
            f"{len(scan['layers'])} layers quantized, drop {scan['drop']:.4g} {scan['drop_unit']} "
            f"(budget {scan['max_drop']:g}); most sensitive alone: "
            + ", ".join(f"{name} {drop:.3g}" for name, drop in worst)
            + "."
        )
        if scan["kept"]:
            console.print(f"Kept in full precision by the scan: {', '.join(scan['kept'])}.")
    if quantization.get("note"):
        console.print(quantization["note"])
