"""hfcompress prune MODEL --task T --sparsity 0.9 [--structure unstructured|2:4|ffn] [--teacher T] --output-dir OUT"""

from ..arguments import DataArguments, ModelArguments
from ..distillation import DistillationArguments
from ..pruning import PruningConfig, TeacherArguments, run_prune
from .common import command_line, parse_dataclasses

DESCRIPTION = (
    "Gradual magnitude pruning (Zhu & Gupta's cubic schedule) while fine-tuning on a GLUE task, or while "
    "distilling from --teacher. Unstructured or 2:4 sparsity, or FFN neuron removal that makes the model "
    "smaller and faster. Every transformers TrainingArguments flag is accepted."
)


def run(argv: list[str]) -> int:
    model_args, data_args, pruning, teacher_args, args = parse_dataclasses(
        argv, (ModelArguments, DataArguments, PruningConfig, TeacherArguments, DistillationArguments), "prune",
        DESCRIPTION, positional="model",
    )  # fmt: skip
    run_prune(model_args, data_args, pruning, teacher_args, args, command_line(argv, "prune"))
    return 0
