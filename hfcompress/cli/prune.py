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
    "(--structure width|depth), each with optional --recovery-steps of distillation. Or vocabulary pruning "
    "(--structure vocab): keep only the tokens of the task's texts in the embeddings and tokenizer. Every "
    "transformers TrainingArguments flag is accepted."
)


TYPES = (ModelArguments, DataArguments, PruningConfig, TeacherArguments, DistillationArguments)


def parse(argv: list[str]):
    return parse_dataclasses(argv, TYPES, "prune", DESCRIPTION, positional="model")


def run(argv: list[str]) -> int:
    model_args, data_args, pruning, teacher_args, args = parse(argv)
    run_prune(model_args, data_args, pruning, teacher_args, args, command_line(argv, "prune", (args.hub_token,)))
    return 0
