"""CPU latency of several saved models, measured in one process, one after the other, as ratios to the first.

    python scripts/bench_latency.py runs/bench-distill/teacher runs/bench-distill/student --repeats 30

Prints a JSON summary: median ms at batch 1 and 32 (sequence length 128) and the speed-up of each model
over the first (the baseline). Run it on an otherwise idle machine.
"""

import argparse
import json
import platform

import torch
from transformers import AutoModelForSequenceClassification

from hfcompress.measure import latency_setup, torch_latency_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="Model folders; the first is the baseline.")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    for path in args.models:
        model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        results[path] = torch_latency_ms(model, repeats=args.repeats)
    baseline = results[args.models[0]]
    summary = {
        "setup": {**latency_setup(repeats=args.repeats), "cpu": platform.processor() or platform.machine()},
        "latency_ms": results,
        "speedup_vs_first": {p: {b: round(baseline[b] / ms, 3) for b, ms in r.items()} for p, r in results.items()},
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
