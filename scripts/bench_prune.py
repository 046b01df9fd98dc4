"""Benchmark: prune the SST-2 MiniLM teacher while distilling from it (unpruned), on real SST-2.

Runs `hfcompress prune` for 80% and 90% unstructured sparsity, a dense control and FFN pruning to half
the intermediate size, plus later stages that continue from a finished run (sparsity held, or raised
from 0.8 to 0.9), and merges the figures for BENCHMARKS.md into OUT/summary.json. Needs a fine-tuned
teacher, e.g. from scripts/bench_distill.py:

    python scripts/bench_prune.py --teacher runs/bench-distill/teacher --data-dir ../shared/data/glue \
        --runs unstructured-80 unstructured-80-stage2
"""

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

RUNS = {
    "unstructured-80": ["--sparsity", "0.8"],
    "unstructured-90": ["--sparsity", "0.9"],
    # Same recipe without pruning: how much of a pruned run's accuracy the recipe itself (more rows,
    # hidden-state distillation) accounts for.
    "dense-control": ["--sparsity", "0.0"],
    "ffn-half": ["--structure", "ffn", "--ffn-size", "768", "--num-train-epochs", "1"],
}
# Later stages: continue from a finished run's output (still distilling from the unpruned teacher),
# so the schedule spans several runs: 0 -> 0.8 in the first, then 0.8 held, or 0.8 -> 0.9 and held.
LATER_STAGES = {
    "unstructured-80-stage2": ("unstructured-80", ["--sparsity", "0.8", "--schedule", "constant",
                                                   "--learning-rate", "5e-5", "--seed", "43"]),
    "unstructured-90-from-80": ("unstructured-80", ["--sparsity", "0.9", "--initial-sparsity", "0.8",
                                                    "--seed", "43"]),
    "unstructured-90-stage3": ("unstructured-90-from-80", ["--sparsity", "0.9", "--schedule", "constant",
                                                           "--learning-rate", "5e-5", "--seed", "44",
                                                           "--num-train-epochs", "0.6"]),
    "unstructured-90-stage4": ("unstructured-90-stage3", ["--sparsity", "0.9", "--schedule", "constant",
                                                          "--learning-rate", "3e-5", "--seed", "45"]),
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="runs/bench-distill/teacher")
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--train-samples", type=int, default=None, help="Default: every training row.")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--learning-rate", default="1e-4")
    parser.add_argument("--end-fraction", type=float, default=0.5, help="Share of steps to reach sparsity.")
    parser.add_argument("--update-frequency", default="50")
    parser.add_argument("--hidden-weight", default="1.0", help="Layer-wise hidden-state MSE to the teacher.")
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=[*RUNS, *LATER_STAGES])
    parser.add_argument("--latency-runs", default="20", help="Latency repeats of the source and the pruned model.")
    parser.add_argument("--out", default="runs/bench-prune")
    args = parser.parse_args()
    rows = args.train_samples or count_rows(Path(args.data_dir) / "sst2" / "train.tsv")
    end_step = int(args.end_fraction * math.ceil(rows / 32) * args.epochs)
    summary_file = Path(args.out) / "summary.json"
    for name in args.runs:
        out = Path(args.out) / name
        start = time.time()
        first, extra = LATER_STAGES.get(name, (None, RUNS.get(name)))
        model = str(Path(args.out) / first) if first else args.teacher
        command = [sys.executable, "-m", "hfcompress", "prune", model, "--teacher", args.teacher,
                   "--task", "sst2", "--data-dir", args.data_dir, "--max-train-samples", str(rows),
                   "--num-train-epochs", str(args.epochs), "--per-device-train-batch-size", "32",
                   "--learning-rate", args.learning_rate, "--warmup-steps", "0.05",
                   "--update-frequency", args.update_frequency, "--end-step", str(end_step),
                   "--temperature", "2", "--distill-weight", "0.7", "--hard-label-weight", "0.3",
                   "--hidden-weight", args.hidden_weight,
                   "--logging-steps", "100", "--seed", "42", "--latency-runs", args.latency_runs,
                   "--output-dir", str(out), "--overwrite_output_dir", *extra]  # fmt: skip
        print("+", " ".join(command[2:]), flush=True)
        subprocess.run(command, check=True)
        summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
        report = json.loads((out / "compression.json").read_text())
        src, res, ratio = report["source"], report["result"], report["ratios"]
        if "origin" in report:  # a later stage: its source is the previous stage; compare with the teacher
            src = report["origin"]
            ratio = {**ratio, "score": report["ratios_to_origin"]["score"]}
        summary[name] = {
            "teacher_accuracy": src["metrics"]["accuracy"],
            "pruned_accuracy": res["metrics"]["accuracy"],
            "accuracy_ratio": ratio["score"],
            "sparsity_pruned_layers": res["sparsity"]["global"],
            "sparsity_all_weights": res["sparsity"]["all_parameters"],
            "size_bytes": [src["size_bytes"], res["size_bytes"]],
            "compressed_size_bytes": [src.get("compressed_size_bytes"), res["sparsity"]["compressed_size_bytes"]],
            "intermediate_size": res["sparsity"].get("intermediate_size"),
            "parameters": [src["parameters"], res["parameters"]],
            "latency_ms": [src.get("latency_ms"), res["latency_ms"]],
            "speedup": {k: v for k, v in ratio.items() if k.startswith("speedup")},
            "latency_setup": report["latency_setup"],
            "end_step": report["steps"][-1]["settings"]["end_step"],
            "max_steps": report["steps"][-1]["settings"]["max_steps"],
            "train_rows": rows,
            "continued_from": first,
            "learning_rate": report["steps"][-1]["settings"]["learning_rate"],
            "hidden_weight": args.hidden_weight,
            "minutes": round((time.time() - start) / 60, 1),
        }
        summary_file.write_text(json.dumps(summary, indent=2) + "\n")  # runs may go in parallel: merge
        print(json.dumps(summary[name], indent=2))


def count_rows(path: Path) -> int:
    with path.open(encoding="utf-8") as f:
        return sum(1 for _ in f) - 1  # header


if __name__ == "__main__":
    main()
