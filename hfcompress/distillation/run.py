"""`hfcompress distill`: the whole distillation job, from checks to the final report."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ..architecture import num_layers
from ..arguments import DataArguments, ModelArguments, StudentArguments
from ..errors import UsageError
from ..finetune import finetune_model, finetune_report
from ..models import load_for_task
from ..pipeline import (
    _is_within,
    as_task,
    check_training_output,
    early_stopping,
    finish_run,
    latency_info,
    latency_runs_of,
    measure,
    prepare_pair,
    save_artifact,
    trainer_args_without_push,
)
from ..report import build_report, upstream, write_report
from ..tasks import Task
from .distillation_config import DistillationArguments
from .distillation_trainer import DistillationTrainer, check_compatible, default_layer_map
from .student import build_student_from_teacher, parse_student_layers
from .teacher_placement import cast_teacher, floating_dtype, teacher_dtype

LOSS_SETTINGS = (
    "temperature",
    "divergence",
    "jsd_beta",
    "distill_weight",
    "hard_label_weight",
    "hidden_weight",
    "attention_weight",
    "cosine_weight",
    "l1_weight",
    "learning_rate",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "seed",
)


def run_distill(
    model_args: ModelArguments,
    student_args: StudentArguments,
    data_args: DataArguments | Task,
    args: DistillationArguments,
    command: str = "",
):
    """Distil `model_args.model` (the teacher) into a student; write the student and compression.json.

    `data_args` is the CLI's DataArguments or a task object; a causal-LM task distils token by token.
    """
    task = as_task(data_args)
    runs = latency_runs_of(data_args)
    if args.teacher_cache and _is_within(Path(args.teacher_cache), Path(args.output_dir)):
        raise UsageError("--teacher-cache must be a folder outside --output-dir, which only finished runs write.")
    output_dir = check_training_output(args, (model_args.model, student_args.student))
    # Every check that can fail runs before any training.
    trainer_args = trainer_args_without_push(args)
    dtype = teacher_dtype(trainer_args)  # the teacher's dtype in training (None: as loaded)
    teacher_name, student_name, splits, tokenizer = prepare_pair(
        model_args.model, student_args.student, task, model_args
    )
    teacher, fresh_head = load_for_task(teacher_name, task, model_args)
    if fresh_head and args.teacher_cache:
        raise UsageError(f"Teacher '{teacher_name}' is not fine-tuned for {task.name}, and --teacher-cache needs a "
                         "fixed teacher; fine-tune it first with hfcompress finetune.")  # fmt: skip
    student, layers = None, None
    if student_name:
        student, _ = load_for_task(student_name, task, model_args)
        task.configure_model(student)
        check_compatible(teacher, student)
    else:
        teacher_layers = num_layers(teacher.config)
        default = str(max(1, teacher_layers // 2))
        layers = parse_student_layers(student_args.student_layers or default, teacher_layers)

    lineage, origin = upstream(teacher_name)  # the teacher may itself come out of an hfcompress run
    steps, teacher_dir = list(lineage), None
    if fresh_head:
        teacher_dir = output_dir / "teacher"
        print(f"Teacher '{teacher_name}' is not fine-tuned for {task.name}: fine-tuning it first into {teacher_dir}.")
        teacher_args = _teacher_args(args, teacher_dir)
        torch.manual_seed(args.seed)
        teacher = finetune_model(teacher, tokenizer, splits, task, teacher_args, model_args.max_seq_length)
    task.configure_model(teacher)

    layer_map = None
    if student is None:  # built after fine-tuning, so it starts from the fine-tuned teacher's layers
        student = build_student_from_teacher(teacher, layers)
        layer_map = dict(enumerate(layers))

    train = task.train_dataset(splits, tokenizer, model_args.max_seq_length)
    held_out = task.eval_dataset(splits, tokenizer, model_args.max_seq_length) if args.eval_strategy != "no" else None

    def measure_teacher():
        return measure(teacher, tokenizer, task, splits, "teacher", str(teacher_dir or teacher_name), teacher_dir,
                       runs, model_args.max_seq_length)  # fmt: skip

    from ..training import is_main_process, run_training

    cache, source = None, None
    # --teacher-dtype: cast once, before the teacher's outputs are cached or the trainer places it. The report's
    # teacher numbers (score, size, latency) are those of the teacher as loaded, so it is measured before a cast.
    if dtype is not None and dtype != floating_dtype(teacher):
        if is_main_process(trainer_args):
            teacher.to(trainer_args.device)
            source = measure_teacher()
        teacher = cast_teacher(teacher, dtype)
    if args.teacher_cache:
        from .teacher_cache import open_teacher_cache

        max_length = task.block_size if task.kind == "causal-lm" else model_args.max_seq_length
        with trainer_args.main_process_first(desc="teacher cache"):  # the others reuse what the main one built
            cache = open_teacher_cache(args.teacher_cache, teacher, tokenizer, train, task.collator(tokenizer),
                                       max_length, trainer_args)  # fmt: skip
        if layer_map is None:
            layer_map = default_layer_map(num_layers(student.config), num_layers(teacher.config))
        # Measured now (unless before a cast), on the training device, so it can be freed.
        if source is None and is_main_process(trainer_args):
            teacher.to(trainer_args.device)
            source = measure_teacher()
        if held_out is None:  # training reads the cache; only evaluation would need the live teacher
            teacher = None
            _free_memory()

    stopper = early_stopping(task, tokenizer, splits, model_args.max_seq_length, args)
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        args=trainer_args,
        layer_map=layer_map,
        teacher_cache=cache,
        train_dataset=train,
        eval_dataset=held_out,
        processing_class=tokenizer,
        data_collator=task.collator(tokenizer),
        callbacks=[stopper] if stopper else None,
    )
    trained = run_training(trainer, trainer_args)
    if not is_main_process(trainer_args):
        return None  # the main process saves, measures, reports and pushes, alone
    student = trainer.model
    stopped = stopper.restore(student) if stopper else None
    save_artifact(student, tokenizer, output_dir, args)

    if source is None:
        source = measure_teacher()
    result = measure(student, tokenizer, task, splits, "student", str(output_dir), output_dir, runs,
                     model_args.max_seq_length)  # fmt: skip
    if teacher_dir:  # the teacher fine-tuned here is an artifact too: its own compression.json and card
        from ..cards import write_model_card

        fine_tuned = {**source, "label": "fine-tuned"}
        teacher_report = finetune_report(task, command, teacher_name, fine_tuned, teacher_args, runs)
        write_report(teacher_report, teacher_dir)
        write_model_card(teacher_dir, source_dir=teacher_name if Path(teacher_name).is_dir() else None)
        steps.append({**teacher_report["steps"][-1], "output": str(teacher_dir)})
    settings = {k: getattr(args, k) for k in LOSS_SETTINGS}
    settings["layer_map"] = {str(k): v for k, v in sorted(trainer.layer_map.items())}
    settings.update(trained)
    if trainer.teacher_placement is not None:  # None: the cache stood in for the teacher throughout
        settings["teacher_placement"] = trainer.teacher_placement
    if cache is not None:
        settings["teacher_cache"] = cache.summary()
    if stopped:
        settings["early_stopping"] = stopped
    steps.append(
        {
            "method": "distillation",
            "teacher": str(teacher_dir or teacher_name),
            "student": student_name or f"teacher layers {','.join(map(str, layers))}",
            "settings": settings,
            "parameters": result["parameters"],
            "size_bytes": result["size_bytes"],
        }
    )
    report = build_report(task, command, source, result, steps, latency_info(runs, task), origin)
    report["data"] = task.data_source()
    finish_run(report, output_dir, args, "Distillation", source_dir=teacher_dir or teacher_name)
    return report


def _free_memory() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _teacher_args(args: DistillationArguments, teacher_dir: Path):
    """The run's own training arguments, pointed at the teacher's folder (and never pushed)."""
    teacher_args = copy.copy(args)
    teacher_args.output_dir = str(teacher_dir)
    teacher_args.push_to_hub = False
    teacher_args.resume_from_checkpoint = None  # the student's checkpoint is not the teacher's
    teacher_args.l1_weight = 0.0  # --l1-weight makes the student prunable; the teacher only has to be good
    return teacher_args
