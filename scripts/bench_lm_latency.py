"""Latency of causal LMs on this machine: prefill (1 x 128 tokens) and decode tokens/s (64 new tokens, KV cache).

Every model loads in this one process and is measured in interleaved rounds (A, B, C, A, B, C, ...), so a
change in machine load hits all of them alike; each figure is the median over rounds, with the min-max spread.
Run it on an idle machine.

    python scripts/bench_lm_latency.py runs/bench-clm/teacher runs/bench-clm/student-forward_kl --rounds 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

import torch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=10, help="forward passes per prefill measurement")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--output-file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM

    from hfcompress.tasks.causal_lm import lm_latency_ms

    models = {name: AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32).eval() for name in args.models}
    samples = {name: {"prefill_batch_1": [], "decode_per_token": []} for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            for key, value in lm_latency_ms(model, args.repeats).items():
                samples[name][key].append(value)
    baseline = args.models[0]
    results = {}
    for name, values in samples.items():
        entry = {}
        for key, series in values.items():
            entry[key] = {"median": statistics.median(series), "min": min(series), "max": max(series)}
            # Per round, baseline / this model: speed-up of this round's pair, then its median and spread.
            ratios = [b / v for b, v in zip(samples[baseline][key], series)]
            entry[f"speedup_{key}"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
        entry["decode_tokens_per_s"] = 1000 / entry["decode_per_token"]["median"]
        results[name] = entry
        print(f"{name}: prefill {entry['prefill_batch_1']['median']:.2f} ms "
              f"({entry['speedup_prefill_batch_1']['median']:.2f}x, {entry['speedup_prefill_batch_1']['min']:.2f}-"
              f"{entry['speedup_prefill_batch_1']['max']:.2f}), decode {entry['decode_tokens_per_s']:.1f} tok/s "
              f"({entry['speedup_decode_per_token']['median']:.2f}x, {entry['speedup_decode_per_token']['min']:.2f}-"
              f"{entry['speedup_decode_per_token']['max']:.2f})")  # fmt: skip
    setup = {"threads": args.threads, "rounds": args.rounds, "repeats": args.repeats, "baseline": baseline}
    if args.output_file:
        with open(args.output_file, "w") as handle:
            json.dump({"setup": setup, "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
