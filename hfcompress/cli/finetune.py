"""hfcompress finetune MODEL --task sst2 --output-dir OUT"""

from ..arguments import DataArguments, FinetuneArguments, ModelArguments
from ..finetune import run_finetune
from .common import command_line, parse_dataclasses

DESCRIPTION = "Fine-tune a model on a GLUE task, evaluate it, and save it with compression.json."


TYPES = (ModelArguments, DataArguments, FinetuneArguments)


def parse(argv: list[str]):
    return parse_dataclasses(argv, TYPES, "finetune", DESCRIPTION, positional="model")


def run(argv: list[str]) -> int:
    model_args, data_args, args = parse(argv)
    run_finetune(model_args, data_args, args, command_line(argv, "finetune", (args.hub_token,)))
    return 0
