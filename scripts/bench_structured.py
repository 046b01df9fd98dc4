"""Minitron-style structured pruning benchmark (issue 12) on the WikiText-2 teacher of scripts/bench_causal_lm.py.

Width: the teacher (hidden 256, 4 heads of 64, FFN 688, 6 layers, vocabulary 8000, 8.84 M parameters) pruned to
about half its parameters (hidden 160, FFN 304, the 4 heads kept: transformers 5's Llama config wants the hidden
size a multiple of the head count) from activation importance, then distilled from the
unpruned teacher for --recovery-steps. Depth: the same teacher cut to 3 blocks (the size of the distilled 3-layer
student) and to 1 block (the closest depth gets to half: the untied embeddings and head alone are 4.1 M), with the
same recovery. Perplexity on the held-out 10% of valid.txt that every run measures (or --test-file) as a ratio to
the teacher's; prefill and decode latency of
every model interleaved in one process (scripts/bench_lm_latency.py), so run it on an idle machine.

    python scripts/bench_causal_lm.py --out runs/bench-clm        # the teacher, once
    OMP_NUM_THREADS=2 python scripts/bench_structured.py --clm runs/bench-clm --out runs/bench-structured
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench_common import add_latency, clm_data, clm_parser, hfcompress

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT.parent / "shared" / "data" / "text" / "wikitext-2"

PLANS = {
    "width-half": ["--structure", "width", "--hidden-size", "160", "--ffn-size", "304"],
    "depth-3": ["--structure", "depth", "--num-layers", "3"],
    "depth-1": ["--structure", "depth", "--num-layers", "1"],
}  # fmt: skip


def main() -> int:
    parser = clm_parser(__doc__, "runs/bench-structured")
    parser.add_argument("--recovery-steps", type=int, default=472, help="472 = 4 epochs, as the distilled students")
    parser.add_argument("--recovery-lr", type=float, default=1e-3)
    parser.add_argument("--latency-rounds", type=int, default=5, help="0 skips the latency measurement")
    parser.add_argument("--hidden-size", type=int, default=160, help="Hidden size of the width-half run.")
    parser.add_argument("--ffn-size", type=int, default=304, help="FFN size of the width-half run.")
    parser.add_argument("--test-file", default=None,
                        help=f"Also evaluate every model on this text (e.g. {TEXT / 'test.txt'}); default: the "
                        "held-out text each pruning run measured.")  # fmt: skip
    args = parser.parse_args()
    clm, out = Path(args.clm), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = clm / "teacher"
    data = clm_data(clm, args.block_size)
    recovery = ["--recovery-steps", args.recovery_steps, "--per_device_train_batch_size", "16", "--learning_rate",
                args.recovery_lr, "--warmup_steps", "50", "--weight_decay", "0.01", "--report_to", "none",
                "--seed", "42", "--divergence", "forward_kl", "--distill-weight", "0.5",
                "--hard-label-weight", "0.5", "--temperature", "1.0"]  # fmt: skip
    plans = {**PLANS, "width-half": ["--structure", "width", "--hidden-size", args.hidden_size, "--ffn-size",
                                     args.ffn_size]}  # fmt: skip
    chosen = args.only.split(",") if args.only else list(plans)
    for name in chosen:
        if not (out / name / "compression.json").is_file():  # else finished in an earlier invocation
            hfcompress("prune", teacher, *plans[name], "--calibration-samples", args.samples, *data, *recovery,
                       "--overwrite_output_dir", "--output-dir", out / name)  # fmt: skip
    results, folders = {}, {}
    for name in ["teacher", *plans]:
        folder = teacher if name == "teacher" else out / name
        if not (folder / "compression.json").is_file():
            continue
        folders[name] = folder
        report = json.loads((folder / "compression.json").read_text())
        if args.test_file:  # a separate evaluation of every model (slow on 2 cores: ~4 min each for test.txt)
            path = out / f"test-{name}.json"
            if not path.is_file():
                hfcompress("evaluate", folder, "--task", "causal-lm", "--validation-file", args.test_file,
                           "--block-size", args.block_size, "--stride", args.block_size // 2, "--latency-runs",
                           "0", "--output-file", path)  # fmt: skip
            measured = json.loads(path.read_text())
            entry = {"perplexity": measured["metrics"]["perplexity"], "parameters": measured["parameters"]}
        elif name == "teacher":
            continue  # filled in from the pruned models' reports: their source is the teacher
        else:  # the held-out text every run measured for the teacher (source) and the result
            entry = {"perplexity": report["result"]["metrics"]["perplexity"],
                     "parameters": report["result"]["parameters"]}  # fmt: skip
            results.setdefault("teacher", {"perplexity": report["source"]["metrics"]["perplexity"],
                                           "parameters": report["source"]["parameters"]})  # fmt: skip
        if name != "teacher":
            settings = report["steps"][-1]["settings"]
            entry.update(targets=settings["targets"], removed_blocks=settings.get("removed_blocks"),
                         heldout_before_recovery=settings["metrics_before_recovery"]["perplexity"],
                         pruning_seconds=settings["pruning_seconds"])  # fmt: skip
        results[name] = entry
    base = results["teacher"]
    for entry in results.values():
        entry["ppl_vs_teacher"] = round(entry["perplexity"] / base["perplexity"], 4)
        entry["parameters_vs_teacher"] = round(entry["parameters"] / base["parameters"], 4)
    if args.latency_rounds:
        add_latency(results, folders, args.latency_rounds, out)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    for name, entry in results.items():
        print(f"{name:12s} ppl {entry['perplexity']:8.2f}  x teacher {entry['ppl_vs_teacher']:.3f}  "
              f"parameters x {entry['parameters_vs_teacher']:.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
