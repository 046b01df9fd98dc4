"""The body of a model card: summary, lineage and results tables, usage snippet, training, limitations.

Each function turns part of compression.json into text the template places; numbers are formatted here and only
here, so the card shows exactly the values of the report.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .metadata import (
    METRIC_NAMES,
    argv_of,
    hub_id,
    metric_split,
    options_of,
    read_json,
    same_path,
    to_int,
)

BACKENDS = ("transformers", "onnxruntime", "bitsandbytes")
ARCHITECTURES = {"bert": "BERT", "roberta": "RoBERTa", "distilbert": "DistilBERT", "electra": "ELECTRA"}
METHOD_NAMES = {
    "finetune": "Fine-tuning",
    "distillation": "Distillation",
    "pruning": "Pruning",
    "vocab-pruning": "Vocabulary pruning",
    "quantization": "Quantization",
}
HYPERPARAMETERS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "warmup_steps",
    "warmup_ratio",
    "weight_decay",
    "lr_scheduler_type",
    "optim",
    "max_grad_norm",
    "seed",
    "fp16",
    "bf16",
)


def summary(report: dict, output_dir: Path, task, config: dict, backend: str) -> str:
    info = task.card()
    layers = config.get("num_hidden_layers") or config.get("n_layers") or config.get("n_layer")
    arch = ARCHITECTURES.get(config.get("model_type", ""), config.get("model_type", ""))
    what = f"a {layers}-layer {arch} {info['what']}" if layers else f"a {info['what']}"
    form = {
        "onnxruntime": ", as an ONNX graph for ONNX Runtime",
        "bitsandbytes": ", with bitsandbytes-quantized weights",
        "torchao": ", with torchao-quantized weights",
    }
    chain = []
    for step in report.get("steps") or []:
        origin = step.get("model") or step.get("teacher") or report["source"].get("model")
        chain.append(f"{METHOD_NAMES.get(step.get('method'), step.get('method', '')).lower()} of "
                     f"{model_link(origin, report, output_dir)}")  # fmt: skip
    made = f"It was made with hfcompress by {', then '.join(chain)}." if chain else "It was evaluated with hfcompress."
    text = f"This model is {what} for {info['for']}{form.get(backend, '')}. {info['predicts']} {made}"
    lower = task.lower_is_better
    ratios = report.get("ratios") or {}
    facts = []
    if ratios.get("parameters"):
        facts.append(f"{ratios['parameters']:.1%} of the source's parameters")
    if ratios.get("size_bytes"):
        facts.append(f"{ratios['size_bytes']:.1%} of its size on disk")
    if ratios.get("score") and lower:
        facts.append(f"{ratios['score']:.3f}x its {task.score_name} (lower is better)")
    elif ratios.get("score"):
        facts.append(f"{ratios['score']:.1%} of its dev score")
    speedups = [
        f"{v:.2f}x ({k.removeprefix('speedup_').replace('_', ' ')})"
        for k, v in ratios.items()
        if k.startswith("speedup_")
    ]
    if facts:
        text += f" It has {', '.join(facts[:-1]) + ' and ' if len(facts) > 1 else ''}{facts[-1]}"
        text += f", and is {' and '.join(speedups)} as fast as the source." if speedups else "."
    start, to_start = report.get("origin") or {}, report.get("ratios_to_origin") or {}
    if to_start.get("score"):
        name = model_link(start.get("model") or "", report, output_dir)
        size = f" at {to_start['size_bytes']:.1%} of its size on disk" if to_start.get("size_bytes") else ""
        kept = (f"has {to_start['score']:.3f}x its {task.score_name}" if lower
                else f"keeps {to_start['score']:.1%} of the dev score")  # fmt: skip
        text += f" Against {name}, where its lineage starts, it {kept}{size}."
    return text


def data_sentence(data: dict, task) -> str:
    return task.card_data_sentence(data)


def lineage_rows(report: dict, output_dir: Path) -> list[dict]:
    src, res = report["source"], report["result"]
    steps = report.get("steps") or []
    rows = []
    for i, step in enumerate(steps):
        parameters, size = step.get("parameters"), step.get("size_bytes")
        if parameters is None and step.get("output") and same_path(step["output"], src.get("model") or ""):
            parameters, size = src.get("parameters"), src.get("size_bytes")
        elif parameters is None and i == len(steps) - 1:
            parameters, size = res.get("parameters"), res.get("size_bytes")
        origin = step.get("model") or step.get("teacher") or src.get("model")
        rows.append(
            {
                "method": method_name(step),
                "source": model_link(origin, report, output_dir),
                "settings": _cell(key_settings(step)),
                "parameters": _fmt_int(parameters),
                "size": _fmt_bytes(size),
            }
        )
    return rows


def key_settings(step: dict) -> str:
    """The settings that define a step, as `name=value`; lists and per-layer detail stay in compression.json."""
    parts = []
    if step.get("student") and step.get("method") == "distillation":
        parts.append(f"student: {step['student']}")
    settings = step.get("settings") or {}
    # What ran, not what was asked: once steps_done is recorded, the asked epochs and steps (still in the Training
    # section, as Trainer arguments) would read as what the step did.
    asked = ("epochs", "num_train_epochs", "max_steps") if "steps_done" in settings else ()
    for key, value in settings.items():
        if key in asked:
            continue
        if key == "layer_map" and isinstance(value, dict):
            pairs = ", ".join(f"{k}←{v}" for k, v in sorted(value.items(), key=lambda kv: int(kv[0])))
            parts.append(f"layer map (student←teacher): {pairs}")
        elif key == "teacher_placement" and isinstance(value, dict):
            parts.append(f"teacher in {value.get('dtype')} on {value.get('device')}")
        elif isinstance(value, (dict, list, tuple)) or value is None or value is False:
            continue
        elif key.endswith("_weight") and value == 0:
            continue  # an unused loss term
        else:
            parts.append(f"{key}={_fmt_value(value)}")
    return ", ".join(parts) or "defaults"


SCORE_LABELS = {"glue": "Dev score (mean of metrics)"}
HIDDEN_METRICS = ("tokens", "scored_tokens", "windows", "window", "stride", "bytes", "nll_per_token")


def result_rows(report: dict) -> list[tuple[str, str, str, str]]:
    src, res, ratios = report["source"], report["result"], report.get("ratios") or {}
    info = report.get("task_info") or {"kind": "glue"}
    direction = " (lower is better)" if info.get("lower_is_better") else ""
    score_label = SCORE_LABELS.get(info["kind"], f"Score: {info.get('score')}{direction}")
    rows = []
    for key, value in (res.get("metrics") or {}).items():
        if key in HIDDEN_METRICS:
            continue
        metric, split = metric_split(key)
        suffix = f" ({split.removeprefix('validation_')})" if "_" in split else ""
        rows.append(
            (
                f"{METRIC_NAMES.get(metric, metric)}{suffix}",
                _fmt_metric((src.get("metrics") or {}).get(key)),
                _fmt_metric(value),
                "",
            )
        )
    rows.append(
        (
            score_label,
            _fmt_metric(src.get("score")),
            _fmt_metric(res.get("score")),
            _fmt_ratio(ratios.get("score")),
        )
    )
    rows.append(
        (
            "Parameters",
            _fmt_int(src.get("parameters")),
            _fmt_int(res.get("parameters")),
            _fmt_ratio(ratios.get("parameters")),
        )
    )
    rows.append(
        (
            "Size on disk",
            _fmt_bytes(src.get("size_bytes")),
            _fmt_bytes(res.get("size_bytes")),
            _fmt_ratio(ratios.get("size_bytes")),
        )
    )
    if res.get("memory_bytes"):
        rows.append(
            (
                "Memory (parameters and buffers)",
                _fmt_bytes(src.get("memory_bytes")),
                _fmt_bytes(res["memory_bytes"]),
                _fmt_ratio(ratios.get("memory_bytes")) or _ratio(src.get("memory_bytes"), res["memory_bytes"]),
            )
        )
    sparsity = res.get("sparsity") or {}
    if sparsity:
        rows.append(("Sparsity of the pruned layers", "–", _fmt_fraction(sparsity.get("global")), ""))
        if sparsity.get("all_parameters") is not None:
            rows.append(("Sparsity of all weights", "–", _fmt_fraction(sparsity["all_parameters"]), ""))
        if sparsity.get("compressed_size_bytes"):
            rows.append(
                (
                    "Size after zlib compression",
                    _fmt_bytes(src.get("compressed_size_bytes")),
                    _fmt_bytes(sparsity["compressed_size_bytes"]),
                    _ratio(src.get("compressed_size_bytes"), sparsity["compressed_size_bytes"]),
                )
            )
        if sparsity.get("intermediate_size"):
            before, after = sparsity["intermediate_size"]
            rows.append(("FFN intermediate size", str(before), str(after), _ratio(before, after)))
    device = ((report.get("latency_setup") or {}).get("device") or "cpu").upper()
    for batch, ms in (res.get("latency_ms") or {}).items():
        speedup = ratios.get(f"speedup_{batch}")
        if batch == "decode_per_token":
            source_ms = (src.get("latency_ms") or {}).get(batch)
            rows.append((f"{device} decode, tokens per second", f"{1000 / source_ms:.1f}" if source_ms else "–",
                         f"{1000 / ms:.1f}", f"{speedup:.3f}x" if speedup else ""))  # fmt: skip
            continue
        rows.append(
            (
                f"{device} latency, {batch.replace('_', ' ')}",
                _fmt_ms((src.get("latency_ms") or {}).get(batch)),
                _fmt_ms(ms),
                f"{speedup:.3f}x {'faster' if speedup >= 1 else '(slower)'}" if speedup else "",
            )
        )
    return rows


def latency_note(report: dict) -> str:
    setup = report.get("latency_setup")
    if not setup:
        return "Latency was not measured for this run (`--latency-runs 0`)."
    if "prefill" in str(setup.get("statistic")):
        return (
            f"Latency on {setup.get('device', 'cpu').upper()}, {setup.get('threads')} threads: "
            f"{setup.get('statistic')}. Your hardware will give other numbers; the ratio is what carries over."
        )
    return (
        f"Latency: forward pass on {setup.get('device', 'cpu').upper()} with dummy inputs of sequence length "
        f"{setup.get('seq_len')}, {setup.get('threads')} threads, {setup.get('statistic')}; batch sizes as in the "
        "row names. Your hardware will give other numbers; the ratio is what carries over."
    )


def snippet_context(report: dict, output_dir: Path, task, config: dict, repo_id, backend: str) -> dict:
    info = task.card()
    labels = {int(k): v for k, v in (config.get("id2label") or {}).items()}
    if not labels and info["labels"]:
        labels = info["labels"]
    example = info["example"]
    template = "text_generation" if info["pipeline_tag"] == "text-generation" and backend == "transformers" else None
    if is_factorized_card(config, backend):
        template = "factorized"
    return {
        "model": repo_id or str(output_dir.resolve()),
        "from_hub": bool(repo_id),
        "texts": ", ".join(f"[{json.dumps(text)}]" for text in example),  # one list per text column
        "labels": labels,
        "regression": info["regression"],
        "prompt": example[0],
        "onnx_file": onnx_file(report, output_dir),
        "max_length": to_int(options_of(argv_of(report)).get("max_seq_length")) or 128,
        "template": f"snippet_{template or (backend if backend in BACKENDS else 'transformers')}.py.j2",
        "generation": info["pipeline_tag"] == "text-generation",
    }


def is_factorized_card(config: dict, backend: str) -> bool:
    """A PyTorch folder with `hfcompress factorize`'s low-rank layers, which only `hfcompress.load_model` builds."""
    return backend == "transformers" and bool(config.get("hfcompress_factorized"))


def onnx_file(report: dict, output_dir: Path) -> str:
    named = [v for step in report.get("steps") or [] for v in (step.get("settings") or {}).values()]
    named += list(report["result"].values())
    for value in named:
        if isinstance(value, str) and value.endswith(".onnx") and (output_dir / Path(value).name).is_file():
            return Path(value).name
    files = sorted(p.name for p in output_dir.glob("*.onnx"))
    quantized = [name for name in files if "quant" in name]
    return (quantized or files or ["model.onnx"])[0]


def hyperparameters(output_dir: Path) -> list[tuple[str, str]]:
    args = read_json(output_dir / "training_args.json")
    rows = []
    for key in HYPERPARAMETERS:
        value = args.get(key)
        if value is None or (key == "max_steps" and value <= 0) or (key in ("fp16", "bf16") and not value):
            continue
        if key in ("warmup_steps", "warmup_ratio", "weight_decay") and not value:
            continue
        rows.append((key, _fmt_value(value)))
    return rows


def limitations(report: dict, task, data: dict, backend: str) -> list[str]:
    res = report["result"]
    steps = report.get("steps") or []
    methods = [step.get("method", "") for step in steps]
    items = []
    sparsity = res.get("sparsity") or {}
    if sparsity and sparsity.get("structure") != "ffn":
        structure = sparsity.get("structure", "unstructured").capitalize()
        items.append(
            f"{structure} sparsity gives no dense speed-up: the zeros are stored and multiplied like any other "
            "weight, so the dense file keeps its size (the gain shows after compression, see the zlib row) and a "
            "dense runtime is no faster; speed needs a sparse kernel or runtime."
        )
    vocab = res.get("vocabulary")
    if vocab:
        before, after = vocab["vocab_size"]
        dev = vocab.get("dev") or {}
        dropped = ""
        if dev.get("tokens"):
            share = f"{dev['tokens_dropped']:,} of the {dev['tokens']:,} dev-set tokens, {dev['dropped_fraction']:.2%}"
            dropped = f" ({share}, were dropped)"
        items.append(
            f"The vocabulary keeps only the {after:,} of {before:,} tokens seen in the task's {vocab['source']} "
            f"texts: a word with a dropped piece is split into kept pieces or read as the unknown token{dropped}, "
            "so text from other sources reads worse than with the full vocabulary."
        )
    if backend == "bitsandbytes":
        speedup = (report.get("ratios") or {}).get("speedup_batch_1")
        measured = f" ({1 / speedup:.1f}x slower at batch 1 here)" if speedup and speedup < 1 else ""
        items.append(
            f"bitsandbytes kernels are built for GPUs: on CPU a bitsandbytes model is slower than fp32{measured} "
            "and only saves memory. Loading it needs `pip install bitsandbytes`."
        )
    if backend == "torchao":
        items.append(
            "The weights are torchao tensor subclasses in safetensors: `from_pretrained` restores them from "
            "config.json's quantization_config and needs `pip install torchao` (0.15 or newer). Speed depends on "
            "torchao's kernels for your device (see the latency rows)."
        )
    if backend == "onnxruntime":
        static = "static" in " ".join(f"{k}={v}" for step in steps for k, v in (step.get("settings") or {}).items())
        items.append(
            (
                "Static int8 quantization was calibrated on a data sample; other inputs may quantize less well. "
                if static
                else "Dynamic int8 quantization quantizes activations at run time. "
            )
            + "The speed-up depends on the CPU's int8 instructions (AVX-512 VNNI, AMX, ARM dot-product) and the "
            "thread count, so measure it on your hardware. The ONNX file runs in ONNX Runtime, not in `transformers`."
        )
    if "low-rank factorization" in methods and backend == "transformers":
        items.append(
            "The factorized layers (two Linear layers each, listed in config.json) are not a `transformers` format: "
            "plain `from_pretrained` leaves them randomly initialized (its load report lists their weights as "
            "MISSING and UNEXPECTED), so load the model with `hfcompress.load_model` as shown above."
        )
    if "distillation" in methods:
        items.append(
            "A distilled student copies its teacher's behaviour, including its errors and biases, and is "
            "usually a little less accurate than the teacher (see the results)."
        )
    if data["kind"] == "synthetic":
        items.append(
            "Trained and evaluated on generated sentences, not GLUE: do not use it for real sentiment analysis."
        )
    if data.get("eval_rows"):
        items.append(f"Dev metrics come from {data['eval_rows']} random dev rows, so they are noisy estimates.")
    items.append(task.card()["task_line"])
    return items


def redact(command: str) -> str:
    """The command with tokens hidden: values of *token* flags and anything shaped like a Hub token."""
    command = re.sub(r"(--[\w-]*token[\w-]*(?:=|\s+))(\S+)", r"\1<redacted>", command)
    return re.sub(r"\bhf_[A-Za-z0-9]{8,}\b", "<redacted>", command)


def mentions_local_paths(command: str) -> bool:
    return any(part.startswith(("/", "./", "../", "~")) or Path(part).exists() for part in command.split()[2:])


def source_label(src: dict) -> str:
    return f"source: {src.get('label', 'source')}"


def method_name(step: dict) -> str:
    method = step.get("method", "")
    name = METHOD_NAMES.get(method, method.replace("_", " ").capitalize())
    settings = step.get("settings") or {}
    detail = settings.get("structure") or settings.get("method") or settings.get("backend") or ""
    return f"{name} ({detail})" if detail else name


def model_link(name: str, report: dict, output_dir: Path) -> str:
    """A Hub link when the model is on the Hub, else its short local path in backticks."""
    repo_id = hub_id(name, report)
    return hub_link(repo_id) if repo_id else f"`{short_path(name, output_dir)}`"


def hub_link(repo_id: str) -> str:
    return f"[{repo_id}](https://huggingface.co/{repo_id})"


def short_path(name, output_dir: Path | None = None) -> str:
    """A local path as the reader needs it: relative to the output folder, else its last two parts."""
    if not isinstance(name, str) or not name:
        return "unknown"
    path = Path(name)
    if output_dir is not None:
        try:
            return str(path.resolve().relative_to(output_dir.resolve()))
        except ValueError:
            pass
    return "/".join(path.parts[-2:]) if len(path.parts) > 2 else name


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fmt_value(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _fmt_metric(value) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) and value == value else "–"


def _fmt_int(value) -> str:
    return f"{value:,}" if isinstance(value, int) else "–"


def _fmt_bytes(value) -> str:
    return f"{value / 1e6:.2f} MB" if isinstance(value, (int, float)) and value else "–"


def _fmt_ms(value) -> str:
    return f"{value:.2f} ms" if isinstance(value, (int, float)) else "–"


def _fmt_fraction(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "–"


def _fmt_ratio(value) -> str:
    return f"{value:.3f}x" if isinstance(value, (int, float)) else ""


def _ratio(before, after) -> str:
    return f"{after / before:.3f}x" if before and after else ""
