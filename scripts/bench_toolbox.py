"""The rest of the toolbox (issue 15), compared on the WikiText-2 teacher of scripts/bench_causal_lm.py.

The teacher: Llama-shaped, 6 blocks, hidden 256, FFN 688, 8.84 M parameters, 4.74 M of them in the blocks'
Linear layers. Every run is one `hfcompress` command; perplexity is on the held-out 10% of valid.txt that every
run measures, as a ratio to the teacher measured in the same command.

- low rank against FFN pruning at the same parameter count: `factorize --parameter-ratio 0.5` (plain SVD and
  activation-aware `--whiten`) against `prune --structure width --ffn-size 173` (the FFN width that removes the
  same 2.37 M weights, from the teacher's config: bench_common.equal_ffn_size), each then distilled from the
  teacher for --recovery-steps;
- importance measures: `prune --structure width --ffn-size 344` with `--importance magnitude|activation|taylor`,
  perplexity before any recovery (the measure alone decides what is lost);
- L1: `finetune` on the text with and without `--l1-weight`, then one-shot magnitude pruning to --sparsity; and
  gradual magnitude pruning to --sparsity while training, with and without it;
- mixed precision: torchao int8-dynamic and int4-weight on every layer, against the same with `--max-drop`.

    OMP_NUM_THREADS=2 python scripts/bench_toolbox.py --clm runs/bench-clm --out runs/bench-toolbox
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench_common import clm_data, clm_parser, equal_ffn_size, print_table, run_toolbox


def plans(args) -> dict[str, list]:
    recovery = ["--recovery-steps", args.recovery_steps, "--per_device_train_batch_size", "16", "--learning_rate",
                args.recovery_lr, "--warmup_steps", "50", "--weight_decay", "0.01", "--report_to", "none", "--seed",
                "42", "--divergence", "forward_kl", "--distill-weight", "0.5", "--hard-label-weight", "0.5",
                "--temperature", "1.0"]  # fmt: skip
    train = ["--max_steps", args.gmp_steps, "--per_device_train_batch_size", "16", "--learning_rate", "3e-4",
             "--warmup_steps", "20", "--report_to", "none", "--seed", "42", "--save_strategy", "no",
             "--eval_strategy", "no", "--logging_steps", "50"]  # fmt: skip
    gradual = ["--sparsity", args.sparsity, *train]
    calibration = ["--calibration-samples", args.samples]
    width = ["prune", "--structure", "width", "--ffn-size", args.importance_ffn_size, *calibration]
    scan = ["--scan-samples", args.scan_samples]
    return {
        "lowrank-svd": ["factorize", "--parameter-ratio", "0.5", *calibration, *recovery],
        "lowrank-whiten": ["factorize", "--parameter-ratio", "0.5", "--whiten", *calibration, *recovery],
        "ffn-equal": ["prune", "--structure", "width", "--ffn-size", args.equal_ffn_size, *calibration, *recovery],
        "importance-magnitude": [*width, "--importance", "magnitude"],
        "importance-activation": [*width, "--importance", "activation"],
        "importance-taylor": [*width, "--importance", "taylor"],
        # L1 as the issue means it: train with the penalty, then cut by magnitude at the end (one shot, 70%).
        "ft": ["finetune", *train],
        "ft-l1": ["finetune", "--l1-weight", args.l1_weight, *train],
        "ft-magnitude": ["@ft", "prune", "--method", "magnitude", "--sparsity", args.sparsity, *calibration],
        "ft-l1-magnitude": ["@ft-l1", "prune", "--method", "magnitude", "--sparsity", args.sparsity, *calibration],
        "gmp": ["prune", "--structure", "unstructured", *gradual],
        "l1-gmp": ["prune", "--structure", "unstructured", "--l1-weight", args.l1_weight, *gradual],
        "int8-all": ["quantize", "--method", "torchao-int8-dynamic"],
        "int8-mixed": ["quantize", "--method", "torchao-int8-dynamic", "--max-drop", args.int8_max_drop, *scan],
        "int4-all": ["quantize", "--method", "torchao-int4-weight"],
        "int4-mixed": ["quantize", "--method", "torchao-int4-weight", "--max-drop", args.int4_max_drop, *scan],
    }


def main() -> int:
    parser = clm_parser(__doc__, "runs/bench-toolbox")
    parser.add_argument("--recovery-steps", type=int, default=472, help="472 = 4 epochs, as bench_structured")
    parser.add_argument("--recovery-lr", type=float, default=1e-3)
    parser.add_argument("--equal-ffn-size", type=int, default=None,
                        help="FFN width removing what --parameter-ratio 0.5 does (default: from the teacher's config, "
                        "173)")  # fmt: skip
    parser.add_argument("--importance-ffn-size", type=int, default=344)
    parser.add_argument("--sparsity", type=float, default=0.7)
    parser.add_argument("--gmp-steps", type=int, default=300)
    parser.add_argument("--l1-weight", type=float, default=5e-6)
    parser.add_argument("--int8-max-drop", type=float, default=0.002)
    parser.add_argument("--int4-max-drop", type=float, default=0.01)
    parser.add_argument("--scan-samples", type=int, default=256)
    args = parser.parse_args()
    clm = Path(args.clm)
    teacher = clm / "teacher"
    if args.equal_ffn_size is None:
        args.equal_ffn_size = equal_ffn_size(teacher, 0.5)
    results, _ = run_toolbox(parser, args, plans(args), teacher, clm_data(clm, args.block_size), "perplexity",
                             "ppl_vs_teacher")  # fmt: skip
    print_table(results, "perplexity", "ppl_vs_teacher")
    return 0


if __name__ == "__main__":
    sys.exit(main())
