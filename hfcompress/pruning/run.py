"""`hfcompress prune`: gradual magnitude pruning while fine-tuning, or while distilling from a teacher."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..arguments import DataArguments, ModelArguments
from ..distillation import DistillationArguments, DistillationTrainer
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
from ..tasks import Task
from .callback import GradualMagnitudePruningCallback
from .pruning_config import PruningConfig
from .report import DENSE_NOTE, compressed_size, make_permanent, sparsity_report

NO_TRAINING = ("vocab", "width", "depth")  # structures pruned before any training (recovery aside)


@dataclass
class TeacherArguments:
    teacher: str | None = field(
        default=None,
        metadata={"help": "Prune while distilling from this fine-tuned teacher (Hub id, alias or folder)."},
    )


def planned_steps(args, n_train: int) -> int:
    """The number of optimizer steps the Trainer will run, computed the way it does (one process)."""
    if args.max_steps > 0:
        return args.max_steps
    batches = math.ceil(n_train / (args.per_device_train_batch_size * max(1, args.world_size)))
    ga = args.gradient_accumulation_steps
    per_epoch = max(batches // ga + int(batches % ga > 0), 1)
    return math.ceil(args.num_train_epochs * per_epoch)


def run_prune(
    model_args: ModelArguments,
    data_args: DataArguments | Task,
    pruning: PruningConfig,
    teacher_args: TeacherArguments,
    args: DistillationArguments,
    command: str = "",
):
    """Prune `model_args.model` gradually while training on the task (with or without a teacher), or in one shot."""
    if getattr(args, "l1_weight", 0.0) and (pruning.method != "gradual" or pruning.structure in NO_TRAINING):
        raise UsageError("--l1-weight works with gradual pruning, which prunes while training; one-shot, width, "
                         "depth and vocab pruning cut before any training (--recovery-steps only heals the cut "
                         "model), so run hfcompress finetune --l1-weight first and prune its output.")  # fmt: skip
    if pruning.structure == "vocab":
        from .vocab import run_vocab

        return run_vocab(model_args, data_args, pruning, teacher_args, args, command)
    if pruning.structure in ("width", "depth"):
        from .minitron import run_structured

        return run_structured(model_args, data_args, pruning, teacher_args, args, command)
    if pruning.method != "gradual":
        from .oneshot import run_oneshot

        return run_oneshot(model_args, data_args, pruning, teacher_args, args, command)
    if getattr(args, "teacher_cache", None) and not teacher_args.teacher:
        raise UsageError("--teacher-cache holds a teacher's outputs; pruning uses them only with --teacher.")
    task = as_task(data_args)
    runs = latency_runs_of(data_args)
    output_dir = check_training_output(args, (model_args.model, teacher_args.teacher))
    trainer_args = trainer_args_without_push(args)
    model_name, teacher_name, splits, tokenizer = prepare_pair(
        model_args.model, teacher_args.teacher, task, model_args
    )
    torch.manual_seed(args.seed)
    model, _ = load_for_task(model_name, task, model_args)
    task.configure_model(model)
    teacher = None
    if teacher_name:
        teacher, fresh = load_for_task(teacher_name, task, model_args)
        if fresh:
            raise UsageError(
                f"Teacher '{teacher_name}' is not fine-tuned for {task.name}; run hfcompress finetune first."
            )
    train = task.train_dataset(splits, tokenizer, model_args.max_seq_length)
    callback = GradualMagnitudePruningCallback(pruning)
    callback.setup(model, planned_steps(args, len(train)))  # every config check, before any training

    source_dir = model_name if Path(model_name).is_dir() else None
    source = measure(model, tokenizer, task, splits, "original", model_name, source_dir, runs,
                     model_args.max_seq_length)  # fmt: skip
    from ..regularization import L1Trainer

    # --l1-weight: the penalty covers the weights this run prunes (unstructured / 2:4), else every block Linear.
    common = dict(args=trainer_args, train_dataset=train, processing_class=tokenizer, callbacks=[callback],
                  data_collator=task.collator(tokenizer), l1_modules=callback.modules or None)  # fmt: skip
    if teacher is not None:
        trainer = DistillationTrainer(model=model, teacher=teacher, **common)
    else:
        trainer = L1Trainer(model=model, **common)
    from ..training import is_main_process, run_training

    trained = run_training(trainer, trainer_args)
    if not is_main_process(trainer_args):
        return None  # the main process saves, measures, reports and pushes, alone
    model = trainer.model
    changes = make_permanent(callback, model)
    save_artifact(model, tokenizer, output_dir, args)

    result = measure(model, tokenizer, task, splits, "pruned", str(output_dir), output_dir, runs,
                     model_args.max_seq_length)  # fmt: skip
    names = list(getattr(callback, "modules", {}) or {})
    result["sparsity"] = {
        "structure": pruning.structure,
        "scope": pruning.scope,
        **sparsity_report(output_dir / "model.safetensors", names),
        "compressed_size_bytes": compressed_size(output_dir / "model.safetensors"),
        "compression": "zlib level 6 (gzip's deflate) of model.safetensors",
        **changes,
    }
    if pruning.structure != "ffn":
        result["sparsity"]["note"] = DENSE_NOTE
    if source_dir and (Path(source_dir) / "model.safetensors").is_file():
        source["compressed_size_bytes"] = compressed_size(Path(source_dir) / "model.safetensors")
    settings = pruning.to_dict()
    settings.update(end_step=callback.end_step, teacher=teacher_name, learning_rate=args.learning_rate,
                    l1_weight=args.l1_weight, max_steps=trainer.state.max_steps, schedule_history=callback.history,
                    **trained)  # fmt: skip
    if teacher_name:
        settings.update(temperature=args.temperature, distill_weight=args.distill_weight,
                        hard_label_weight=args.hard_label_weight,
                        teacher_placement=trainer.teacher_placement)  # fmt: skip
    step = {"method": "pruning", "model": model_name, "settings": settings, "parameters": result["parameters"],
            "size_bytes": result["size_bytes"], "sparsity": result["sparsity"]["global"]}  # fmt: skip
    lineage, origin = upstream(model_name)  # a second pruning stage continues the first one's lineage
    report = build_report(task, command, source, result, [*lineage, step], latency_info(runs, task),
                          origin)  # fmt: skip
    report["data"] = task.data_source()
    title = "Pruning" + (" with distillation" if teacher_name else "")
    finish_run(report, output_dir, args, title, source_dir=source_dir)
    return report
