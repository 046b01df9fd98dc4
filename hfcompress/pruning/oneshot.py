"""`hfcompress prune --method magnitude|wanda|sparsegpt`: one-shot pruning with calibration, then optional recovery.

The model is pruned block by block on a few calibration samples of the task's training data (see
calibration.py), saved as a dense checkpoint with exact zeros, and optionally trained a few steps more by
distillation from the unpruned model with the one-shot masks held fixed (`--recovery-steps`).
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import sys
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from ..architecture import oriented_weight
from ..errors import UsageError
from ..models import load_for_task
from ..pipeline import (
    as_task,
    check_training_output,
    finish_run,
    latency_info,
    latency_runs_of,
    measure,
    prepare_pair,
    save_artifact,
    trainer_args_without_push,
)
from ..report import build_report, upstream
from .calibration import calibration_batches, prune_block_by_block
from .masks import prunable_modules
from .oneshot_scores import magnitude_mask, parse_n_m, sparsegpt_prune, wanda_mask
from .report import DENSE_NOTE, compressed_size, sparsity_report

logger = logging.getLogger("hfcompress")


class FixedMaskCallback(TrainerCallback):
    """Keeps pruned weights at exactly zero while training (masks never change): one-shot recovery."""

    def __init__(self, modules: dict[str, torch.nn.Module]):
        self.modules = modules
        self.masks = {name: oriented_weight(m).ne(0) for name, m in modules.items()}

    @torch.no_grad()
    def apply(self) -> None:
        from ..sharding import full_weights

        for name, keep in self.masks.items():
            with full_weights([self.modules[name]]):  # under FSDP2, on the full weight; else a no-op
                weight = oriented_weight(self.modules[name])
                weight.mul_(keep.to(device=weight.device, dtype=weight.dtype))

    def rebind(self, model) -> None:
        """Point at `model`, a gathered copy of the trained one with the same module names (after FSDP training)."""
        self.modules = {name: model.get_submodule(name) for name in self.modules}

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.apply()

    def on_train_end(self, args, state, control, **kwargs):
        self.apply()


def check_n_m(modules: dict[str, torch.nn.Module], n_m: tuple[int, int] | None) -> None:
    if not n_m:
        return
    n, m = n_m
    for name, module in modules.items():
        width = oriented_weight(module).shape[1]
        if width % m:
            raise UsageError(f"{n}:{m} pruning needs input widths divisible by {m}, but {name} has {width}.")


def prune_one_block(method: str, sparsity: float, n_m, block_size: int, dampening: float):
    """The `prune_block` callable of `prune_block_by_block` for one method."""

    @torch.no_grad()
    def prune(index, modules, stats):
        for name, module in modules.items():
            weight = oriented_weight(module)
            if method == "sparsegpt":
                new = sparsegpt_prune(weight, stats[name].hessian, sparsity, n_m, block_size, dampening)
                weight.copy_(new)
                continue
            if method == "wanda":
                keep = wanda_mask(weight, stats[name].input_norms, sparsity, n_m)
            else:
                keep = magnitude_mask(weight, sparsity, n_m)
            weight.mul_(keep.to(weight.dtype))

    return prune


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


@dataclasses.dataclass
class Prepared:
    """What every calibration-based pruning run has loaded and checked before its long work starts."""

    task: object
    runs: int
    output_dir: Path
    trainer_args: object
    model_name: str
    teacher_name: str | None
    splits: object
    tokenizer: object
    model: torch.nn.Module
    train: object
    batches: list[dict]
    source_dir: str | None
    source: dict
    teacher_placement: dict | None = None  # the recovery teacher's device and dtype, once it has run


def prepare_calibration(
    model_args, data_args, teacher_args, args, samples: int, check, what: str = "one-shot pruning"
) -> Prepared:
    """Load and check everything, draw calibration batches and measure the unpruned model.

    `check(model)` runs on the loaded model before any data is tokenized or measured (bad targets fail fast);
    `what` names the method in the errors.
    """
    task = as_task(data_args)
    runs = latency_runs_of(data_args)
    output_dir = check_training_output(args, (model_args.model, teacher_args.teacher))
    trainer_args = trainer_args_without_push(args)
    model_name, teacher_name, splits, tokenizer = prepare_pair(
        model_args.model, teacher_args.teacher, task, model_args
    )
    model, fresh = load_for_task(model_name, task, model_args)
    if fresh:
        raise UsageError(f"'{model_name}' is not fine-tuned for {task.name}; {what} needs a trained model.")
    model.eval()
    check(model)
    train = task.train_dataset(splits, tokenizer, model_args.max_seq_length)
    if len(train) == 0:
        raise UsageError(f"The training data gave no calibration samples; {what} needs some.")
    batches = calibration_batches(train, task.collator(tokenizer), samples, args.per_device_eval_batch_size,
                                  args.seed)  # fmt: skip
    source_dir = model_name if Path(model_name).is_dir() else None
    source = measure(model, tokenizer, task, splits, "original", model_name, source_dir, runs,
                     model_args.max_seq_length)  # fmt: skip
    return Prepared(task, runs, output_dir, trainer_args, model_name, teacher_name, splits, tokenizer, model, train,
                    batches, source_dir, source)  # fmt: skip


def recover_and_save(p: Prepared, model, model_args, args, steps: int, fixed_masks=None):
    """Optionally distil `steps` steps from the unpruned model (or --teacher), then save; returns
    (model, metrics before recovery or None)."""
    before = None
    if steps:
        before = p.task.evaluate(model, p.tokenizer, p.splits, model_args.max_seq_length)
        model, p.teacher_placement = _recover(model, fixed_masks, p.teacher_name or p.model_name, p.task,
                                              model_args, p.train, p.tokenizer,
                                              dataclasses.replace(p.trainer_args, max_steps=steps))  # fmt: skip
    save_artifact(model, p.tokenizer, p.output_dir, args if steps else None)
    return model, before


def finish_calibrated(p: Prepared, model, model_args, args, command, step_method, settings, title, extra=None,
                      label: str = "pruned"):  # fmt: skip
    """Measure the saved model, write the report and card, push if asked; returns the report."""
    if p.teacher_placement is not None:  # recovery distilled from a teacher: where it ran, in which dtype
        settings = {**settings, "teacher_placement": p.teacher_placement}
    result = measure(model, p.tokenizer, p.task, p.splits, label, str(p.output_dir), p.output_dir, p.runs,
                     model_args.max_seq_length)  # fmt: skip
    result.update(extra(result) if extra else {})
    if p.source_dir and (Path(p.source_dir) / "model.safetensors").is_file():
        p.source["compressed_size_bytes"] = compressed_size(Path(p.source_dir) / "model.safetensors")
    step = {"method": step_method, "model": p.model_name, "settings": settings,
            "parameters": result["parameters"], "size_bytes": result["size_bytes"]}  # fmt: skip
    if "sparsity" in result:
        step["sparsity"] = result["sparsity"]["global"]
    lineage, origin = upstream(p.model_name)
    report = build_report(p.task, command, p.source, result, [*lineage, step], latency_info(p.runs, p.task), origin)
    report["data"] = p.task.data_source()
    finish_run(report, p.output_dir, args, title, source_dir=p.source_dir)
    return report


def calibration_settings(p: Prepared, seconds: float) -> dict:
    return {"calibration_samples": sum(len(b["input_ids"]) for b in p.batches),
            "calibration_tokens_per_sample": int(p.batches[0]["input_ids"].shape[1]),
            "pruning_seconds": round(seconds, 2), "peak_rss_bytes": _peak_rss_bytes()}  # fmt: skip


def run_oneshot(model_args, data_args, pruning, teacher_args, args, command: str = "") -> dict:
    n_m = parse_n_m(pruning.structure)
    sparsity = 1 - n_m[0] / n_m[1] if n_m else pruning.sparsity
    modules = {}

    def check(model):
        modules.update(prunable_modules(model, pruning.modules))
        check_n_m(modules, n_m)

    p = prepare_calibration(model_args, data_args, teacher_args, args, pruning.calibration_samples, check)
    started = time.perf_counter()
    prune = prune_one_block(pruning.method, sparsity, n_m, pruning.sparsegpt_block_size, pruning.dampening)
    blocks = prune_block_by_block(p.model, p.batches, modules, prune, hessian=pruning.method == "sparsegpt")
    seconds = time.perf_counter() - started
    model, before_recovery = recover_and_save(p, p.model, model_args, args, pruning.recovery_steps, modules)

    def sparsity_entry(result):
        weights = p.output_dir / "model.safetensors"
        return {"sparsity": {
            "structure": pruning.structure,
            "scope": "per-layer" if pruning.method == "magnitude" and not n_m else "per-row",
            **sparsity_report(weights, list(modules)),
            "compressed_size_bytes": compressed_size(weights),
            "compression": "zlib level 6 (gzip's deflate) of model.safetensors",
            "note": DENSE_NOTE,
        }}  # fmt: skip

    settings = {"method": pruning.method, "sparsity": sparsity, "structure": pruning.structure,
                "modules": pruning.modules, "seed": args.seed, **calibration_settings(p, seconds),
                "blocks": blocks}  # fmt: skip
    if pruning.method == "sparsegpt":
        settings.update(dampening=pruning.dampening, block_size=pruning.sparsegpt_block_size)
    if pruning.recovery_steps:
        settings.update(recovery_steps=pruning.recovery_steps, teacher=p.teacher_name or p.model_name,
                        learning_rate=args.learning_rate, metrics_before_recovery=before_recovery)  # fmt: skip
    title = f"One-shot pruning ({pruning.method}" + (", with recovery)" if pruning.recovery_steps else ")")
    return finish_calibrated(p, model, model_args, args, command, "oneshot-pruning", settings, title, sparsity_entry)


def _recover(model, modules, teacher_name, task, model_args, train, tokenizer, trainer_args):
    """Distil from the unpruned model for a few steps, pruned weights (if `modules`) held at zero; returns the
    model and the teacher's placement (device and dtype)."""
    from ..distillation import DistillationTrainer

    teacher, _ = load_for_task(teacher_name, task, model_args)
    callback = FixedMaskCallback(modules) if modules else None
    model.train()
    trainer = DistillationTrainer(model=model, teacher=teacher, args=trainer_args, train_dataset=train,
                                  processing_class=tokenizer, data_collator=task.collator(tokenizer),
                                  callbacks=[callback] if callback else None)  # fmt: skip
    from ..training import run_training

    run_training(trainer, trainer_args)
    if callback:
        callback.apply()
    model = trainer.model
    model.eval()
    return model, trainer.teacher_placement
