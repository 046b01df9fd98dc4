"""Post-training quantization: ONNX Runtime int8 on CPU, bitsandbytes int8 / NF4; backends load on first use."""

from .configs import (
    METHODS,
    BnbInt8Config,
    BnbNf4Config,
    OnnxDynamicInt8Config,
    OnnxStaticInt8Config,
    TorchaoInt4WeightConfig,
    TorchaoInt8DynamicConfig,
    TorchaoInt8WeightConfig,
    config_for_method,
)
from .quantize import quantize

__all__ = [
    "METHODS",
    "BnbInt8Config",
    "BnbNf4Config",
    "OnnxDynamicInt8Config",
    "OnnxStaticInt8Config",
    "OrtSequenceClassifier",
    "QuantizeArguments",
    "TorchaoInt4WeightConfig",
    "TorchaoInt8DynamicConfig",
    "TorchaoInt8WeightConfig",
    "config_for_method",
    "quantize",
    "run_quantize",
]


def __getattr__(name: str):
    if name == "OrtSequenceClassifier":
        from .onnx_runtime import OrtSequenceClassifier

        return OrtSequenceClassifier
    if name in ("QuantizeArguments", "QuantizeDataArguments", "run_quantize"):
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module 'hfcompress.quantization' has no attribute '{name}'")
