"""hfcompress distill TEACHER --task sst2 [--student-layers N | --student M] --output-dir OUT"""

from ..arguments import DataArguments, ModelArguments, StudentArguments
from ..distillation import DistillationArguments, run_distill
from .common import command_line, parse_dataclasses

DESCRIPTION = (
    "Distil a teacher into a smaller student on a GLUE task. The student is a subset of the teacher's layers "
    "(--student-layers) or any model sharing its tokenizer (--student). A teacher without a fine-tuned head "
    "is fine-tuned first. Every transformers TrainingArguments flag is accepted."
)


TYPES = (ModelArguments, StudentArguments, DataArguments, DistillationArguments)


def parse(argv: list[str]):
    return parse_dataclasses(argv, TYPES, "distill", DESCRIPTION, positional="model")


def run(argv: list[str]) -> int:
    model_args, student_args, data_args, args = parse(argv)
    run_distill(model_args, student_args, data_args, args, command_line(argv, "distill", (args.hub_token,)))
    return 0
