"""hfcompress prune MODEL --task T [--method gradual|magnitude|wanda|sparsegpt] [--structure ...] --output-dir OUT"""

from ..arguments import DataArguments, ModelArguments
from ..distillation import DistillationArguments
from ..pruning import PruningConfig, TeacherArguments, run_prune
from .common import command_line, parse_dataclasses

DESCRIPTION = (
    "Gradual magnitude pruning (Zhu & Gupta's cubic schedule) while fine-tuning on the task, or while "
    "distilling from --teacher: unstructured or 2:4 sparsity, or FFN neuron / attention head removal that makes "
    "the model smaller and faster. Or one-shot pruning from calibration data, block by block (--method magnitude, "
    "wanda or sparsegpt; unstructured or n:m), or Minitron-style width/depth pruning from activation importance "
    "(--structure width|depth), each with optional --recovery-steps of distillation. Every "
    "transformers TrainingArguments flag is accepted."
)


def run(argv: list[str]) -> int:
    model_args, data_args, pruning, teacher_args, args = parse_dataclasses(
        argv, (ModelArguments, DataArguments, PruningConfig, TeacherArguments, DistillationArguments), "prune",
        DESCRIPTION, positional="model",
    )  # fmt: skip
    run_prune(model_args, data_args, pruning, teacher_args, args, command_line(argv, "prune", (args.hub_token,)))
    return 0
