"""hfcompress factorize MODEL --task T (--rank R | --energy E | --parameter-ratio P) [--whiten] --output-dir OUT"""

from ..arguments import DataArguments, ModelArguments
from ..distillation import DistillationArguments
from ..factorization import FactorizationConfig, run_factorize
from ..pruning import TeacherArguments
from .common import command_line, parse_dataclasses

DESCRIPTION = (
    "Low-rank factorization: each Linear layer inside the transformer blocks (or those --modules names) becomes two "
    "smaller ones from a truncated SVD, when that saves parameters; the rank from --rank, a kept-energy fraction "
    "(--energy) or one parameter budget spread across layers by singular-value energy (--parameter-ratio). "
    "--whiten makes it activation-aware (SVD-LLM): it keeps what matters for the layer's outputs on calibration "
    "data. --recovery-steps N distils from the unfactorized model afterwards. The folder is smaller on disk; load "
    "it with `from hfcompress import load_model`. Every transformers TrainingArguments flag is accepted."
)

TYPES = (ModelArguments, DataArguments, FactorizationConfig, TeacherArguments, DistillationArguments)


def parse(argv: list[str]):
    return parse_dataclasses(argv, TYPES, "factorize", DESCRIPTION, positional="model")


def run(argv: list[str]) -> int:
    model_args, data_args, factorization, teacher_args, args = parse(argv)
    run_factorize(model_args, data_args, factorization, teacher_args, args,
                  command_line(argv, "factorize", (args.hub_token,)))  # fmt: skip
    return 0
