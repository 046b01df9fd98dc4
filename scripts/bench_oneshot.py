"""One-shot pruning benchmark (issue 12) on the WikiText-2 teacher of scripts/bench_causal_lm.py.

Every model goes through the hfcompress CLI: magnitude, Wanda and SparseGPT at 50% unstructured and at 2:4,
calibrated on 128 blocks of 128 tokens of the teacher's training text; then 2:4 followed by a short
distillation from the unpruned teacher with the masks held fixed (--recovery-steps). Perplexity on
the held-out text (the last 10% of valid.txt's lines, never trained on) that each run measures before and after,
as a ratio to the teacher's in the same run (or on --test-file); the peak RSS of each pruning process.

    python scripts/bench_causal_lm.py --out runs/bench-clm        # the teacher, once
    OMP_NUM_THREADS=2 python scripts/bench_oneshot.py --clm runs/bench-clm --out runs/bench-oneshot
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench_common import clm_data, clm_parser, hfcompress

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT.parent / "shared" / "data" / "text" / "wikitext-2"


def runs(recovery_steps: int) -> dict[str, list[str]]:
    plans = {}
    for method in ("magnitude", "wanda", "sparsegpt"):
        plans[f"{method}-50"] = ["--method", method, "--sparsity", "0.5"]
        plans[f"{method}-2of4"] = ["--method", method, "--structure", "2:4"]
    for method in ("wanda", "sparsegpt"):
        plans[f"{method}-2of4-recovered"] = ["--method", method, "--structure", "2:4", "--recovery-steps",
                                             recovery_steps]  # fmt: skip
    return plans


def main() -> int:
    parser = clm_parser(__doc__, "runs/bench-oneshot")
    parser.add_argument("--recovery-steps", type=int, default=200)
    parser.add_argument("--recovery-lr", type=float, default=1e-4)
    parser.add_argument("--test-file", default=None,
                        help=f"Also evaluate every model on this text (e.g. {TEXT / 'test.txt'}); default: the "
                        "held-out text each pruning run measured.")  # fmt: skip
    args = parser.parse_args()
    clm, out = Path(args.clm), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = clm / "teacher"
    data = clm_data(clm, args.block_size)
    recovery = ["--per_device_train_batch_size", "16", "--learning_rate", args.recovery_lr, "--warmup_steps", "20",
                "--report_to", "none", "--seed", "42"]  # fmt: skip
    plans = runs(args.recovery_steps)
    chosen = args.only.split(",") if args.only else list(plans)
    for name in chosen:
        if (out / name / "compression.json").is_file():
            continue  # finished in an earlier invocation
        hfcompress("prune", teacher, *plans[name], "--calibration-samples", args.samples, *data, *recovery,
                   "--overwrite_output_dir", "--output-dir", out / name)  # fmt: skip
    results = {}
    for name in ["teacher", *plans]:
        folder = teacher if name == "teacher" else out / name
        if not (folder / "compression.json").is_file():
            continue
        report = json.loads((folder / "compression.json").read_text())
        if args.test_file:  # a separate evaluation of every model (slow on 2 cores: ~4 min each for test.txt)
            path = out / f"test-{name}.json"
            if not path.is_file():
                hfcompress("evaluate", folder, "--task", "causal-lm", "--validation-file", args.test_file,
                           "--block-size", args.block_size, "--stride", args.block_size // 2, "--latency-runs", "0",
                           "--output-file", path)  # fmt: skip
            metrics = json.loads(path.read_text())["metrics"]
        elif name == "teacher":
            continue  # filled in from the pruned models' reports: their source is the teacher
        else:  # the held-out text every pruning run measured, teacher (source) and result alike
            metrics = report["result"]["metrics"]
            results.setdefault("teacher", {"perplexity": report["source"]["metrics"]["perplexity"],
                                           "bits_per_byte": report["source"]["metrics"]["bits_per_byte"]})  # fmt: skip
        entry = {"perplexity": metrics["perplexity"], "bits_per_byte": metrics["bits_per_byte"]}
        if name != "teacher":
            settings = report["steps"][-1]["settings"]
            entry.update(sparsity=report["result"]["sparsity"]["global"],
                         peak_rss_mb=settings["peak_rss_bytes"] / 2**20, pruning_seconds=settings["pruning_seconds"],
                         heldout_before_recovery=(settings.get("metrics_before_recovery") or {}).get("perplexity"),
                         heldout=report["result"]["metrics"]["perplexity"])  # fmt: skip
        results[name] = entry
    base = results["teacher"]["perplexity"]
    for entry in results.values():
        entry["ppl_vs_teacher"] = round(entry["perplexity"] / base, 4)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, entry in results.items():
        print(f"{name:28s} ppl {entry['perplexity']:9.2f}  x teacher {entry['ppl_vs_teacher']:.3f}  "
              f"sparsity {entry.get('sparsity', 0):.3f}  peak RSS {entry.get('peak_rss_mb', 0):.0f} MB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
