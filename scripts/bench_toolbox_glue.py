"""The rest of the toolbox (issue 15), compared on the SST-2 classifier teacher, as bench_toolbox.py does on the
WikiText-2 causal LM (the run loop, results and table are bench_common's, shared with it).

The teacher: MiniLM-L6 fine-tuned on SST-2 (scripts/recipes/sst2-edge.yaml's first step): BERT layout, 6 layers,
hidden 384, FFN 1536, 22.7 M parameters, 10.6 M of them in the encoder's Linear layers. Every run is one `hfcompress`
command training on --max-train-samples rows of SST-2 train (a fixed random subset) and scoring all 872 dev rows,
the teacher's accuracy measured in the same command; every run that trains takes --steps at --batch-size.

- low rank against FFN pruning at the same parameter count: `factorize --parameter-ratio 0.5` (plain SVD and
  `--whiten`, calibrated on --samples rows) then --steps of distillation from the teacher, against
  `prune --structure ffn --ffn-size 385 --teacher` (385: the FFN width that removes the same 5.3 M parameters, from
  the teacher's config: bench_common.equal_ffn_size) distilling from the teacher for the same --steps, the neurons
  cut by magnitude at the first step (`--schedule constant`, as factorize cuts before it recovers: ffn-equal) or
  gradually until 70% of the steps (ffn-equal-gradual). `--structure width` takes only the Llama layout.
- importance measures: FFN 1536 -> 768 with `--importance magnitude|activation|taylor`, accuracy with no recovery:
  `prune --structure ffn` at learning rate 0, the scores gathered over --samples training rows (--samples /
  --batch-size steps), every neuron cut at once after them (--schedule constant --start-step); nothing else changes.
- L1: `finetune` with and without `--l1-weight`, then one-shot magnitude pruning to --sparsity; and gradual
  magnitude pruning to --sparsity while training, with and without it;
- mixed precision: ONNX Runtime dynamic int8 and torchao int8-dynamic on every layer, against the same with
  `--max-drop` (accuracy points, the sensitivity scan on --scan-samples train rows).

Latency is measured separately, on an idle machine, by `hfcompress benchmark` of the teacher and the runs chosen
(--latency-rounds; finished runs are not run again). The real run, ~65 min of a 2-core CPU, then its latency:

    OMP_NUM_THREADS=2 python scripts/bench_toolbox_glue.py --teacher runs/headline-sst2/01-finetune \\
        --data-dir ../shared/data/glue --out runs/bench-toolbox-sst2
    OMP_NUM_THREADS=2 python scripts/bench_toolbox_glue.py --teacher runs/headline-sst2/01-finetune \\
        --data-dir ../shared/data/glue --out runs/bench-toolbox-sst2 --latency-rounds 5
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench_common import add_benchmark_latency, base_parser, equal_ffn_size, print_table, run_toolbox, save_results


def plans(args, teacher: Path) -> dict[str, list]:
    batch = ["--per_device_train_batch_size", args.batch_size, "--report_to", "none", "--seed", "42",
             "--save_strategy", "no", "--logging_steps", "50"]  # fmt: skip
    train = ["--learning_rate", args.lr, "--warmup_steps", "0.06", *batch]
    distill = ["--learning_rate", args.recovery_lr, "--warmup_steps", "0.06", "--temperature", "2.0",
               "--distill-weight", "0.7", "--hard-label-weight", "0.3", *batch]  # fmt: skip
    calibration = ["--calibration-samples", args.samples]
    lowrank = ["factorize", "--parameter-ratio", "0.5", *calibration, "--recovery-steps", args.steps, *distill]
    equal = ["prune", "--structure", "ffn", "--ffn-size", args.equal_ffn_size, "--teacher", teacher, "--max_steps",
             args.steps, *distill]  # fmt: skip
    scored = max(1, args.samples // args.batch_size)  # batches the activation and taylor scores gather over
    importance = ["prune", "--structure", "ffn", "--ffn-size", args.importance_ffn_size, "--schedule", "constant",
                  "--start-step", scored, "--max_steps", scored + 1, "--learning_rate", "0", *batch]  # fmt: skip
    gradual = ["prune", "--structure", "unstructured", "--sparsity", args.sparsity, "--max_steps", args.steps, *train]
    magnitude = ["prune", "--method", "magnitude", "--sparsity", args.sparsity, *calibration]
    scan = ["--max-drop", args.max_drop, "--scan-samples", args.scan_samples]
    return {
        "lowrank-svd": lowrank,
        "lowrank-whiten": [*lowrank, "--whiten"],
        "ffn-equal": [*equal, "--schedule", "constant"],
        "ffn-equal-gradual": equal,
        "importance-magnitude": [*importance, "--importance", "magnitude"],
        "importance-activation": [*importance, "--importance", "activation"],
        "importance-taylor": [*importance, "--importance", "taylor"],
        "ft": ["finetune", "--max_steps", args.steps, *train],
        "ft-l1": ["finetune", "--l1-weight", args.l1_weight, "--max_steps", args.steps, *train],
        "ft-magnitude": ["@ft", *magnitude],
        "ft-l1-magnitude": ["@ft-l1", *magnitude],
        "gmp": gradual,
        "l1-gmp": [*gradual, "--l1-weight", args.l1_weight],
        "onnx-int8-all": ["quantize", "--method", "onnx-int8-dynamic"],
        "onnx-int8-mixed": ["quantize", "--method", "onnx-int8-dynamic", *scan],
        "torchao-int8-all": ["quantize", "--method", "torchao-int8-dynamic"],
        "torchao-int8-mixed": ["quantize", "--method", "torchao-int8-dynamic", *scan],
    }


def main() -> int:
    parser = base_parser(__doc__, "runs/bench-toolbox-sst2")
    parser.add_argument("--teacher", default="runs/headline-sst2/01-finetune", help="The fine-tuned classifier.")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--max-train-samples", type=int, default=8000, help="Training rows: 250 x 32 = one epoch.")
    parser.add_argument("--steps", type=int, default=250, help="Steps of every training run (recovery included).")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-5, help="finetune and gradual magnitude pruning.")
    parser.add_argument("--recovery-lr", type=float, default=1e-4, help="Runs that distil from the teacher.")
    parser.add_argument("--samples", type=int, default=256, help="Calibration rows; importance scores' rows.")
    parser.add_argument("--equal-ffn-size", type=int, default=None,
                        help="FFN width removing what --parameter-ratio 0.5 does (default: from the teacher's config, "
                        "385 for MiniLM)")  # fmt: skip
    parser.add_argument("--importance-ffn-size", type=int, default=None, help="Default: half the teacher's.")
    parser.add_argument("--sparsity", type=float, default=0.7)
    parser.add_argument("--l1-weight", type=float, default=5e-6)
    parser.add_argument("--max-drop", type=float, default=0.5, help="Accuracy points the mixed precision may lose.")
    parser.add_argument("--scan-samples", type=int, default=512)
    parser.add_argument("--latency-rounds", type=int, default=0, help="hfcompress benchmark rounds; 0 skips it.")
    args = parser.parse_args()
    teacher, out = Path(args.teacher), Path(args.out)
    if args.equal_ffn_size is None:
        args.equal_ffn_size = equal_ffn_size(teacher, 0.5)
    if args.importance_ffn_size is None:
        from transformers import AutoConfig

        from hfcompress.pruning.ffn import intermediate_size

        args.importance_ffn_size = intermediate_size(AutoConfig.from_pretrained(teacher))[1] // 2
    glue = ["--task", args.task, "--data-dir", args.data_dir]
    data = [*glue, "--max-train-samples", args.max_train_samples, "--latency-runs", "0"]
    results, chosen = run_toolbox(parser, args, plans(args, teacher), teacher, data, "accuracy",
                                  "accuracy_vs_teacher")  # fmt: skip
    if args.latency_rounds:
        add_benchmark_latency(results, teacher, {name: out / name for name in chosen}, args.latency_rounds, out, glue)
        save_results(out, results)
    print_table(results, "accuracy", "accuracy_vs_teacher")
    return 0


if __name__ == "__main__":
    sys.exit(main())
