"""Shared by the benchmark scripts: running the hfcompress CLI, interleaved latency of a set of folders, and the run
loop of the toolbox comparisons (bench_toolbox.py, bench_toolbox_glue.py): one command per run, resumable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def hfcompress(*args) -> None:
    command = [sys.executable, "-m", "hfcompress", *map(str, args)]
    print("$", " ".join(command[2:]), flush=True)
    subprocess.run(command, check=True)


def add_latency(results: dict, folders: dict, rounds: int, out: Path) -> None:
    """Measure every folder in one process, interleaved over `rounds` (bench_lm_latency.py); store per model."""
    latency = out / "latency.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_lm_latency.py"), *map(str, folders.values()),
                    "--rounds", str(rounds), "--output-file", str(latency)], check=True)  # fmt: skip
    timings = json.loads(latency.read_text())["results"]
    for name, folder in folders.items():
        results[name]["latency"] = timings.get(str(folder))


def base_parser(doc: str, out: str):
    """A parser with --out and --only (comma-separated run names), the docstring as its description."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=out)
    parser.add_argument("--only", default=None, help="Comma-separated run names (default: all).")
    return parser


def clm_parser(doc: str, out: str):
    """The options every script working on bench_causal_lm.py's teacher shares: --clm, --out, --only, --samples,
    --block-size."""
    parser = base_parser(doc, out)
    parser.add_argument("--clm", default="runs/bench-clm", help="Output folder of scripts/bench_causal_lm.py.")
    parser.add_argument("--samples", type=int, default=128, help="Calibration blocks.")
    parser.add_argument("--block-size", type=int, default=128)
    return parser


def clm_data(clm: Path, block_size: int) -> list:
    """The data flags of a command on that teacher: its training text and the held-out 10% of valid.txt."""
    return ["--task", "causal-lm", "--train-file", clm / "train.txt", "--validation-file", clm / "heldout.txt",
            "--block-size", block_size, "--latency-runs", "0"]  # fmt: skip


def equal_ffn_size(model_dir: Path, ratio: float = 0.5) -> int:
    """The FFN width at which FFN pruning removes the parameters that `factorize --parameter-ratio RATIO` takes out
    of the Linear layers inside the blocks, (1 - RATIO) of their weights (factorizing keeps the biases): a neuron
    removed takes its row and bias in each projection into the FFN and its column in the one out of it, in every
    block. From the config alone: the model is built on the meta device, its layers found as hfcompress finds them."""
    import torch
    from transformers import AutoConfig, AutoModel

    from hfcompress.architecture import in_out
    from hfcompress.factorization.layers import shapes_of, target_modules
    from hfcompress.pruning.ffn import find_feed_forwards, intermediate_size

    config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModel.from_config(config)
    weights = sum(i * o for i, o in shapes_of(target_modules(model)).values())
    ffns = find_feed_forwards(model)
    ffn = ffns[0]
    per_neuron = sum(in_out(up)[0] + (up.bias is not None) for up in ffn.up) + in_out(ffn.down)[1]
    return intermediate_size(config)[1] - round((1 - ratio) * weights / (len(ffns) * per_neuron))


def summarize(report: dict, metric: str, ratio_key: str) -> dict:
    """One toolbox run's figures from its compression.json: `metric` and the source's (the teacher, or the model an
    "@run" plan starts from; finetune measures no source, so its runs have none), their ratio (`ratio_key`),
    parameters and size of both, the command, and what the run records: the metric before recovery, sparsity, FFN
    width, the L1 weight, the importance measure, the sensitivity scan."""
    source, result = report["source"], report["result"]
    source_value = source.get("metrics", {}).get(metric)
    entry = {metric: result["metrics"][metric], f"teacher_{metric}": source_value,
             "parameters": result["parameters"], "teacher_parameters": source.get("parameters"),
             "size_bytes": result.get("size_bytes"), "teacher_size_bytes": source.get("size_bytes"),
             "memory_bytes": result.get("memory_bytes")}  # fmt: skip
    entry[ratio_key] = round(entry[metric] / source_value, 4) if source_value else None
    for key in ("parameters", "size_bytes"):
        teacher = entry[f"teacher_{key}"]
        entry[f"{key.removesuffix('_bytes')}_vs_teacher"] = round(entry[key] / teacher, 4) if teacher else None
    settings = report["steps"][-1]["settings"]
    before = settings.get("metrics_before_recovery")
    if before:
        entry[f"{metric}_before_recovery"] = before[metric]
    sparsity = result.get("sparsity")
    if isinstance(sparsity, dict):
        entry["sparsity"] = sparsity["global"]
        entry["compressed_size_bytes"] = sparsity.get("compressed_size_bytes")
        if "intermediate_size" in sparsity:
            entry["ffn_size"] = sparsity["intermediate_size"][1]
    scan = result.get("quantization", {}).get("sensitivity")
    if scan:
        entry["scan"] = {k: scan[k] for k in ("drop", "max_drop", "kept", "rows", "split")}
        entry["scan"]["most_sensitive"] = sorted(scan["layers"].items(), key=lambda kv: -kv[1])[:5]
    for key in ("l1_weight", "importance", "measured_sparsity"):
        if key in settings:
            entry[key] = settings[key]
    entry["command"] = report.get("command")
    return entry


def run_toolbox(parser, args, runs: dict, teacher: Path, data: list, metric: str, ratio_key: str):
    """Run the plans named by --only (default: all) in order, each one `hfcompress COMMAND SOURCE OPTIONS DATA`
    into args.out/NAME, from the teacher or, for a plan starting "@run", from that run's folder. A run whose
    compression.json exists finished in an earlier invocation and is not run again. Results go to
    args.out/results.json (with those of earlier invocations) as each run ends, with a line printed; returns
    (every result, the names chosen)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = args.only.split(",") if args.only else list(runs)
    unknown = sorted(set(chosen) - set(runs))
    if unknown:
        parser.error(f"unknown run(s) {', '.join(unknown)}; choose from {', '.join(runs)}")
    results_file = out / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {}
    for name in chosen:
        folder = out / name
        done = (folder / "compression.json").is_file()  # in an earlier invocation, whose latency (if any) stays
        if not done:
            source, plan = teacher, runs[name]
            if plan[0].startswith("@"):
                source, plan = out / plan[0][1:], plan[1:]
            command, *options = plan
            hfcompress(command, source, *options, *data, "--overwrite_output_dir", "--output-dir", folder)
        report = json.loads((folder / "compression.json").read_text())
        results[name] = {**(results.get(name, {}) if done else {}), **summarize(report, metric, ratio_key)}
        save_results(out, results)
        entry = results[name]
        print(f"{name:22s} {metric} {entry[metric]:.4f}  x source {entry[ratio_key] or float('nan'):.3f}  "
              f"parameters x {entry['parameters_vs_teacher'] or float('nan'):.3f}", flush=True)  # fmt: skip
    return results, chosen


def save_results(out: Path, results: dict) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def print_table(results: dict, metric: str, ratio_key: str) -> None:
    """The runs side by side: metric, its ratio to the source's, parameters, size on disk, what else was recorded."""

    def number(value, form: str) -> str:
        return format(value, form) if value is not None else "-".rjust(int(form.split(".")[0].rstrip(",d")))

    print(f"\n{'run':22s} {metric:>10s} {'x source':>8s} {'params':>11s} {'x':>6s} {'MB':>7s} {'x':>6s}  notes")
    for name, e in results.items():
        notes = [f"{key} {e[key]}" for key in ("sparsity", "ffn_size", "importance", "l1_weight") if e.get(key)]
        if "scan" in e:
            notes.append(f"scan drop {e['scan']['drop']} (max {e['scan']['max_drop']}), {len(e['scan']['kept'])} kept")
        if "latency_ms" in e:
            notes.append("ms " + ", ".join(f"{k} {v}" for k, v in e["latency_ms"].items()))
        size = e["size_bytes"] / 1e6 if e["size_bytes"] else None
        print(f"{name:22s} {number(e[metric], '10.4f')} {number(e[ratio_key], '8.3f')} "
              f"{number(e['parameters'], '11,d')} {number(e['parameters_vs_teacher'], '6.3f')} {number(size, '7.1f')} "
              f"{number(e['size_vs_teacher'], '6.3f')}  {'; '.join(notes)}")  # fmt: skip


def add_benchmark_latency(results: dict, teacher: Path, folders: dict, rounds: int, out: Path, data: list) -> None:
    """`hfcompress benchmark` of the teacher and `folders` ({run: folder}) in one process, latency interleaved over
    `rounds` (out/benchmark/benchmark.json holds everything it measures); each run gets its median latency in ms
    and its median speed-up against the teacher."""
    bench = out / "benchmark"
    hfcompress("benchmark", teacher, *folders.values(), *data, "--rounds", rounds, "--output-dir", bench,
               "--overwrite-output-dir")  # fmt: skip
    rows = json.loads((bench / "benchmark.json").read_text())["rows"][1:]  # in the order named, the teacher first
    for name, row in zip(folders, rows):
        latency = row["latency"]
        results[name]["latency_ms"] = {key: value["median"] for key, value in latency.items() if key != "speedup"}
        results[name]["speedup_vs_teacher"] = {key: value["median"] for key, value in latency["speedup"].items()}
