"""Benchmark: MiniLM-L6 fine-tuned on real SST-2, distilled into a 3-layer student built from its layers.

Runs the CLI exactly as a user would (finetune, then distill), then prints the figures for BENCHMARKS.md.
Usage: python scripts/bench_distill.py --data-dir ../shared/data/glue --train-samples 20000 --out runs/bench-distill
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def hfcompress(*args) -> None:
    command = [sys.executable, "-m", "hfcompress", *map(str, args)]
    print("+", " ".join(command[2:]), flush=True)
    subprocess.run(command, check=True)


def dev_rows(data_dir: Path) -> int | None:
    """Rows of SST-2's dev split in the classic GLUE layout (SST-2/dev.tsv, header line first), if found."""
    for folder in ("SST-2", "sst2", "SST2"):
        path = data_dir / folder / "dev.tsv"
        if path.is_file():
            return sum(1 for line in path.read_text(encoding="utf-8").splitlines()[1:] if line.strip())
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--train-samples", type=int, default=20000)
    parser.add_argument("--teacher-epochs", type=float, default=1.0)
    parser.add_argument("--distill-epochs", type=float, default=2.0)
    parser.add_argument("--student-layers", default="3")
    parser.add_argument("--base-model", default="minilm", help="Model the teacher is fine-tuned from.")
    parser.add_argument("--latency-runs", type=int, default=20, help="Latency repeats of the distilled student.")
    parser.add_argument("--out", default="runs/bench-distill")
    args = parser.parse_args()
    out = Path(args.out)
    teacher, student = out / "teacher", out / "student"
    common = ["--task", "sst2", "--data-dir", args.data_dir, "--max-train-samples", args.train_samples,
              "--per-device-train-batch-size", "32", "--max-seq-length", "128", "--seed", "42",
              "--logging-steps", "50"]  # fmt: skip
    start = time.time()
    if not (teacher / "compression.json").exists():
        teacher_flags = ["--learning-rate", "5e-5", "--warmup-steps", "0.1", "--num-train-epochs", args.teacher_epochs]
        hfcompress(
            "finetune", args.base_model, *common, *teacher_flags, "--output-dir", teacher, "--latency-runs", "0"
        )
    hfcompress("distill", teacher, *common, "--student-layers", args.student_layers, "--learning-rate", "1e-4",
               "--warmup-steps", "0.1", "--num-train-epochs", args.distill_epochs, "--temperature", "2",
               "--distill-weight", "0.7", "--hard-label-weight", "0.3", "--latency-runs", args.latency_runs,
               "--output-dir", student, "--overwrite_output_dir")  # fmt: skip
    report = json.loads((student / "compression.json").read_text())
    src, res, ratio = report["source"], report["result"], report["ratios"]
    summary = {
        "train_samples": args.train_samples,
        "dev_samples": dev_rows(Path(args.data_dir)),
        "teacher_accuracy": src["metrics"]["accuracy"],
        "student_accuracy": res["metrics"]["accuracy"],
        "accuracy_ratio": ratio["score"],
        "teacher_layers": json.loads((teacher / "config.json").read_text())["num_hidden_layers"],
        "student_layers": report["steps"][-1]["settings"]["layer_map"],
        "parameters": [src["parameters"], res["parameters"]],
        "size_bytes": [src["size_bytes"], res["size_bytes"]],
        "latency_ms": [src["latency_ms"], res["latency_ms"]],
        "speedup": {k: v for k, v in ratio.items() if k.startswith("speedup")},
        "latency_setup": report["latency_setup"],
        "minutes": round((time.time() - start) / 60, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
