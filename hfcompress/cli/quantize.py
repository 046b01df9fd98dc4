"""hfcompress quantize MODEL --method onnx-int8-dynamic|onnx-int8-static|bnb-int8|bnb-nf4 [--task T --data-dir D]
--output-dir OUT"""

from ..arguments import ModelArguments
from ..quantization.run import QuantizeArguments, QuantizeDataArguments, run_quantize
from .common import command_line, parse_dataclasses

DESCRIPTION = (
    "Post-training quantization of a sequence classifier: ONNX Runtime int8 for CPU (dynamic, or static "
    "calibrated on the task's train split) or bitsandbytes int8 / NF4 (memory, GPU or CPU). With --task, the "
    "fp32 model and the result are evaluated on the GLUE dev set; size, memory and CPU latency are measured "
    "in the same run."
)


TYPES = (ModelArguments, QuantizeDataArguments, QuantizeArguments)


def parse(argv: list[str]):
    return parse_dataclasses(argv, TYPES, "quantize", DESCRIPTION, positional="model")


def run(argv: list[str]) -> int:
    model_args, data_args, quant_args = parse(argv)
    run_quantize(model_args, data_args, quant_args, command_line(argv, "quantize"))
    return 0
