"""compression.json: what a run did and measured, and the summary table printed at its end.

Schema (every command writes the same shape; later steps add keys, never rename them):

    created      ISO time (UTC)
    task         GLUE task name, e.g. "sst2", or the task kind: "classification", "causal-lm"
    task_info    the task as tasks.task_from_report rebuilds it: {kind, name, lower_is_better, score, dataset, ...}
    command      the exact command line (or Python call) that produced the folder
    source       the model compressed:   {label, model, metrics, score, parameters, size_bytes, latency_ms?, ...}
    result       the model in this folder, same keys, plus per method:
                   backend      "transformers" (default) | "onnxruntime" | "bitsandbytes"
                   sparsity     {"global": float, "per_layer": {name: float}, "compressed_size_bytes": int, ...}
                   memory_bytes bytes of parameters and buffers in memory (quantization)
    ratios       result/source for score, parameters, size_bytes; speedup_batch_N = source/result latency
    steps        lineage, oldest first: [{method, settings, parameters, size_bytes, ...}], including the steps
                 recorded in the input folder's own compression.json
    origin       (chained runs only) the source of the first compression step in the lineage, as recorded then
    ratios_to_origin  result/origin for score, parameters, size_bytes (no latency: measured in another run)
    latency_setup {device, seq_len, threads, statistic} or null when latency was skipped
    versions     python and library versions

metrics are the task's: GLUE dev metrics keyed by name (accuracy, f1, matthews_correlation, pearson, spearmanr;
MNLI adds _matched / _mismatched suffixes; score is their mean); classification accuracy and macro f1 (score:
accuracy); causal-lm perplexity, bits_per_byte, tokens, window and stride (score: perplexity, lower is better).
A causal LM's entries add `generations` (greedy continuations of fixed prompts) and its latency_ms holds
prefill_batch_1 (1 x 128 tokens) and decode_per_token (ms per new token with the KV cache).
"""

from __future__ import annotations

import datetime
import json
import platform
from pathlib import Path

REPORT_NAME = "compression.json"


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in ("hfcompress", "torch", "transformers", "datasets", "accelerate", "huggingface_hub"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    return versions


def ratios(source: dict, result: dict) -> dict[str, float]:
    """result/source for quality and size; source/result for latency (a speed-up above 1 is good)."""
    out = {}
    if source.get("score") and result.get("score") is not None:
        out["score"] = round(result["score"] / source["score"], 4)
    for key in ("parameters", "size_bytes", "memory_bytes", "peak_memory_bytes"):
        if source.get(key) and result.get(key):
            out[key] = round(result[key] / source[key], 4)
    for batch, ms in (result.get("latency_ms") or {}).items():
        if (source.get("latency_ms") or {}).get(batch) and ms:
            out[f"speedup_{batch}"] = round(source["latency_ms"][batch] / ms, 3)
    return out


def build_report(
    task,
    command: str,
    source: dict,
    result: dict,
    steps: list[dict],
    latency: dict | None,
    origin: dict | None = None,
) -> dict:
    info = task.info() if hasattr(task, "info") else None
    report = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "task": task.name if info else task,
        "task_info": info,
        "command": command,
        "source": source,
        "result": result,
        "ratios": ratios(source, result),
        "steps": steps,
        "latency_setup": latency,
        "versions": library_versions(),
    }
    if origin:
        report["origin"] = {k: origin[k] for k in ORIGIN_KEYS if k in origin}
        # Latency is left out: the origin was timed in another run, maybe on another machine.
        report["ratios_to_origin"] = {
            k: v for k, v in ratios(report["origin"], result).items() if not k.startswith("speedup_")
        }
    return report


ORIGIN_KEYS = ("label", "model", "metrics", "score", "parameters", "size_bytes", "compressed_size_bytes")


def upstream(model_name: str | Path | None) -> tuple[list[dict], dict | None]:
    """The lineage recorded in a local model folder's compression.json: (steps, origin).

    origin is the model before the first compression step (distillation, pruning, quantization), or None
    when the folder holds no compressed model (a Hub id, a plain folder, or a fine-tuned model).
    """
    report = read_report(model_name) if model_name and Path(model_name).is_dir() else None
    if not report:
        return [], None
    steps = report.get("steps") or []
    compressed = any(step.get("method") != "finetune" for step in steps)
    return steps, report.get("origin") or (report.get("source") if compressed else None)


def write_report(report: dict, output_dir: str | Path) -> Path:
    path = Path(output_dir) / REPORT_NAME
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    return path


def read_report(directory: str | Path) -> dict | None:
    path = Path(directory) / REPORT_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def _fmt_bytes(n: int | None) -> str:
    return "-" if not n else f"{n / 1e6:.1f} MB"


def _fmt(value, spec: str = ".4f", scale: float = 1.0, unit: str = "") -> str:
    """A measured number, or "-" when it was not measured (missing or NaN): a summary never shows nan."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return "-"
    return f"{value / scale:{spec}}{unit}"


def _fmt_ratio(value) -> str:
    return "" if _fmt(value) == "-" else f"{value:.3f}x"


def summary_rows(report: dict) -> list[tuple[str, str, str, str]]:
    src, res, rat = report["source"], report["result"], report["ratios"]
    rows = []
    for name, value in (res.get("metrics") or {}).items():
        if isinstance(value, (int, float)) and name not in (
            "tokens",
            "scored_tokens",
            "windows",
            "window",
            "stride",
            "bytes",
            "nll_per_token",
        ):
            rows.append((name, _fmt((src.get("metrics") or {}).get(name)), _fmt(value), ""))
    info = report.get("task_info") or {}
    if info.get("kind", "glue") == "glue" and _fmt(res.get("score")) != "-":
        rows.append(("GLUE score", _fmt(src.get("score")), _fmt(res.get("score")), _fmt_ratio(rat.get("score"))))
    elif "score" in rat:
        better = "lower is better" if info.get("lower_is_better") else "higher is better"
        rows.append((f"score ({info.get('score')}), {better}", "", "", f"{rat['score']:.3f}x"))
    # A count of 0 is "not measured" (a quantized folder without a report), never a model with no parameters.
    parameters = [v if v else None for v in (src.get("parameters"), res.get("parameters"))]
    if any(parameters):
        rows.append(
            ("parameters", *(_fmt(v, ".2f", 1e6, " M") for v in parameters), _fmt_ratio(rat.get("parameters")))
        )
    budget = ((report.get("steps") or [{}])[-1].get("settings") or {}).get("budget_parameters")
    if budget:  # prune --parameter-budget: what was asked, next to what the result has
        rows.append(("parameter budget", "", _fmt(budget, ".2f", 1e6, " M"), ""))
    if src.get("size_bytes") or res.get("size_bytes"):
        rows.append(("size on disk", _fmt_bytes(src.get("size_bytes")), _fmt_bytes(res.get("size_bytes")),
                     _fmt_ratio(rat.get("size_bytes"))))  # fmt: skip
    if src.get("memory_bytes") and res.get("memory_bytes") and "generations" in res:
        rows.append(("parameter memory", _fmt_bytes(src["memory_bytes"]), _fmt_bytes(res["memory_bytes"]),
                     _fmt_ratio(rat.get("memory_bytes"))))  # fmt: skip
    sparsity = res.get("sparsity")
    if sparsity:
        # The source's sparsity is not measured (it may be a pruned model already), so its cell stays empty.
        rows.append(("sparsity (pruned layers)", "-", _fmt(sparsity.get("global"), ".3f"), ""))
        if _fmt(sparsity.get("all_parameters")) != "-":
            rows.append(("sparsity (all weights)", "-", _fmt(sparsity["all_parameters"], ".3f"), ""))
        if sparsity.get("compressed_size_bytes") and src.get("compressed_size_bytes"):
            ratio = sparsity["compressed_size_bytes"] / src["compressed_size_bytes"]
            rows.append(("compressed size (zlib)", _fmt_bytes(src["compressed_size_bytes"]),
                         _fmt_bytes(sparsity["compressed_size_bytes"]), f"{ratio:.3f}x"))  # fmt: skip
        if sparsity.get("intermediate_size"):
            before, after = sparsity["intermediate_size"]
            rows.append(("FFN intermediate size", str(before), str(after), f"{after / before:.3f}x"))
    vocab = res.get("vocabulary")
    if vocab:
        before, after = vocab["vocab_size"]
        rows.append(("vocabulary (tokens)", str(before), str(after), f"{after / before:.3f}x"))
        if (vocab.get("dev") or {}).get("tokens"):
            dev = vocab["dev"]
            rows.append(("dev tokens dropped", "", f"{dev['tokens_dropped']:,} ({dev['dropped_fraction']:.2%})", ""))
    for batch, ms in (res.get("latency_ms") or {}).items():
        source_ms = (src.get("latency_ms") or {}).get(batch)
        speedup = rat.get(f"speedup_{batch}")
        if batch == "decode_per_token":
            rows.append(("decode tokens/s", f"{1000 / source_ms:.1f}" if source_ms else "-", f"{1000 / ms:.1f}",
                         f"{speedup:.2f}x more" if speedup else ""))  # fmt: skip
            continue
        rows.append(
            (
                f"latency {batch.replace('_', ' ')}",
                f"{source_ms:.1f} ms" if source_ms else "-",
                f"{ms:.1f} ms",
                f"{speedup:.2f}x faster" if speedup else "",
            )
        )
    return rows


def print_summary(report: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{title} ({report['task']})")
    if report["result"].get("metrics", {}).get("window"):
        m = report["result"]["metrics"]
        title_note = f"perplexity: window {m['window']}, stride {m['stride']}, {m['scored_tokens']:,} tokens scored"
        table.caption = title_note
    for column in (
        "",
        report["source"].get("label", "source"),
        report["result"].get("label", "result"),
        "ratio",
    ):
        table.add_column(column, justify="right" if column else "left")
    for row in summary_rows(report):
        table.add_row(*row)
    console = Console(width=110)
    console.print(table)
    note = (report["result"].get("sparsity") or {}).get("note")
    if note:
        console.print(note)
    origin, to_origin = report.get("origin"), report.get("ratios_to_origin") or {}
    if origin and to_origin:
        shown = ", ".join(f"{k.replace('_bytes', ' on disk')} {v:.3f}x" for k, v in to_origin.items())
        console.print(f"Against the start of the lineage ({origin.get('model')}, measured in its own run): {shown}.")
    for side in ("source", "result"):
        for sample in (report[side].get("generations") or [])[:1]:
            console.print(
                f"{report[side].get('label', side)} writes: {sample['prompt']!r} -> {sample['continuation']!r}"
            )
    if report.get("latency_setup"):
        setup = report["latency_setup"]
        device = setup.get("device", "cpu").upper()
        console.print(f"{device} latency: seq {setup['seq_len']}, {setup['threads']} threads, {setup['statistic']}.")
