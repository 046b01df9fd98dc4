"""Settings of each post-training quantization method; `quantize` dispatches on their type."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

from ..errors import UsageError

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
FOUR_BIT_TYPES = ("nf4", "fp4")


@dataclass
class PartialSettings:
    """Which layers a method leaves in full precision: a regex on module names, and/or a sensitivity scan."""

    exclude: str | None = field(
        default=None,
        metadata={"help": "Regex on module names (re.search) of layers to keep in full precision."},
    )
    max_drop: float | None = field(
        default=None,
        metadata={
            "help": "Sensitivity scan: quantize one layer at a time, then the largest set of the least sensitive "
            "layers whose metric drop stays within this: accuracy points (1.0 = one point) for classifiers, a "
            "relative perplexity rise (0.02 = 2%%) for causal LMs."
        },
    )
    scan_samples: int = field(default=256, metadata={"help": "Rows (causal LMs: text lines) the scan scores on."})
    # Module names kept in full precision, resolved from `exclude` and the scan (not a user setting).
    excluded_modules: list[str] = field(default_factory=list)

    def _check_partial(self) -> None:
        import re

        if self.exclude is not None:
            try:
                re.compile(self.exclude)
            except re.error as err:
                raise UsageError(f"--exclude '{self.exclude}' is not a valid regular expression: {err}.") from None
        if self.max_drop is not None and not (self.max_drop >= 0 and self.max_drop != float("inf")):
            raise UsageError(f"--max-drop must be a finite number of 0 or more, got {self.max_drop}.")
        if self.scan_samples < 1:
            raise UsageError(f"--scan-samples must be at least 1, got {self.scan_samples}.")


@dataclass
class OnnxConfig(PartialSettings):
    """Export and graph settings shared by both ONNX Runtime methods."""

    optimize: bool = field(
        default=True,
        metadata={"help": "Fuse attention, LayerNorm and GELU with ONNX Runtime's transformer optimizer first."},
    )
    # Per-channel scales cost nothing measurable in size or speed on MiniLM and kept the distilled student's SST-2
    # accuracy within 0.5 points, where one scale per tensor lost 0.8 (see BENCHMARKS.md).
    per_channel: bool = field(default=True, metadata={"help": "One int8 scale per output channel of each weight."})
    opset: int = field(default=17, metadata={"help": "ONNX opset of the exported graph."})
    export_tolerance: float = field(
        default=1e-4,
        metadata={"help": "Largest |logit difference| allowed between ONNX Runtime (fp32) and PyTorch."},
    )

    backend: ClassVar[str] = "onnxruntime"
    method: ClassVar[str] = ""

    def __post_init__(self):
        self._check_partial()
        if not 14 <= self.opset <= 20:
            raise UsageError(f"opset must be between 14 and 20, got {self.opset}.")
        if not self.export_tolerance > 0:
            raise UsageError(f"--export-tolerance must be greater than 0, got {self.export_tolerance}.")

    def to_dict(self) -> dict:
        return {"method": self.method, **asdict(self)}


@dataclass
class OnnxDynamicInt8Config(OnnxConfig):
    """int8 weights, activations quantized on the fly per batch: no calibration data needed."""

    method: ClassVar[str] = "onnx-int8-dynamic"


@dataclass
class OnnxStaticInt8Config(OnnxConfig):
    """int8 weights and activations, activation ranges calibrated on examples of the task's train split."""

    calibration_samples: int = field(default=50, metadata={"help": "Train examples used to calibrate ranges."})
    calibration_method: str = field(
        default="minmax", metadata={"help": "How activation ranges are chosen: minmax, entropy or percentile."}
    )
    percentile: float = field(default=99.999, metadata={"help": "calibration_method percentile: the percentile."})

    method: ClassVar[str] = "onnx-int8-static"

    def __post_init__(self):
        super().__post_init__()
        if self.calibration_samples < 1:
            raise UsageError(f"--calibration-samples must be at least 1, got {self.calibration_samples}.")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise UsageError(
                f"Unknown calibration method '{self.calibration_method}'; choose one of: "
                f"{', '.join(CALIBRATION_METHODS)}."
            )
        if not 90.0 <= self.percentile <= 100.0:
            raise UsageError(f"--percentile must be between 90 and 100, got {self.percentile}.")


@dataclass
class BnbConfig(PartialSettings):
    """Settings shared by both bitsandbytes methods."""

    skip_modules: list[str] | None = field(
        default=None,
        metadata={"help": "More module names to keep in full precision (the classification head always is)."},
    )

    backend: ClassVar[str] = "bitsandbytes"
    method: ClassVar[str] = ""

    def to_dict(self) -> dict:
        return {"method": self.method, **asdict(self)}


@dataclass
class BnbInt8Config(BnbConfig):
    """LLM.int8(): int8 weights, with outlier activation columns computed in 16-bit."""

    threshold: float = field(
        default=6.0, metadata={"help": "Activations above this magnitude take LLM.int8()'s 16-bit path."}
    )

    method: ClassVar[str] = "bnb-int8"

    def __post_init__(self):
        self._check_partial()
        if self.threshold < 0:
            raise UsageError(f"The int8 outlier threshold must be 0 or more, got {self.threshold}.")


@dataclass
class BnbNf4Config(BnbConfig):
    """4-bit NormalFloat (or FP4) weights in blocks of 64, computed in `compute_dtype`."""

    quant_type: str = field(default="nf4", metadata={"help": "4-bit data type: nf4 or fp4."})
    double_quant: bool = field(default=True, metadata={"help": "Quantize the block scales too (saves ~0.4 bit)."})
    compute_dtype: str = field(
        default="float32", metadata={"help": "Dtype of the matmuls: float32, bfloat16 or float16."}
    )

    method: ClassVar[str] = "bnb-nf4"

    def __post_init__(self):
        self._check_partial()
        if self.quant_type not in FOUR_BIT_TYPES:
            raise UsageError(f"Unknown 4-bit type '{self.quant_type}'; choose nf4 or fp4.")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise UsageError(
                f"Unknown compute dtype '{self.compute_dtype}'; choose one of: {', '.join(COMPUTE_DTYPES)}."
            )


@dataclass
class TorchaoConfig(PartialSettings):
    """torchao weight quantization applied at load (`transformers.TorchAoConfig`), saved as safetensors."""

    skip_modules: list[str] | None = field(
        default=None,
        metadata={"help": "More module names to keep in full precision (the head always is)."},
    )
    group_size: int = field(default=32, metadata={"help": "int4: weights sharing one scale (32, 64, 128 or 256)."})

    backend: ClassVar[str] = "torchao"
    method: ClassVar[str] = ""

    def __post_init__(self):
        self._check_partial()
        if self.group_size not in (32, 64, 128, 256):
            raise UsageError(f"The int4 group size must be 32, 64, 128 or 256, got {self.group_size}.")

    def to_dict(self) -> dict:
        return {"method": self.method, **asdict(self)}


@dataclass
class TorchaoInt8WeightConfig(TorchaoConfig):
    """int8 weights with one scale per output row; activations stay in floating point."""

    method: ClassVar[str] = "torchao-int8-weight"


@dataclass
class TorchaoInt8DynamicConfig(TorchaoConfig):
    """int8 weights, and activations quantized to int8 per token at run time."""

    method: ClassVar[str] = "torchao-int8-dynamic"


@dataclass
class TorchaoInt4WeightConfig(TorchaoConfig):
    """int4 weights in groups of `group_size` inputs, each group with its own scale."""

    method: ClassVar[str] = "torchao-int4-weight"


CONFIGS = {
    cls.method: cls
    for cls in (OnnxDynamicInt8Config, OnnxStaticInt8Config, BnbInt8Config, BnbNf4Config, TorchaoInt8WeightConfig,
                TorchaoInt8DynamicConfig, TorchaoInt4WeightConfig)
}  # fmt: skip
METHODS = tuple(CONFIGS)


def config_for_method(method: str, **settings) -> OnnxConfig | BnbConfig | TorchaoConfig:
    """The config of `method` ("onnx-int8-dynamic", ...) with `settings`; unknown methods are refused."""
    if method not in CONFIGS:
        raise UsageError(f"Unknown quantization method '{method}'; choose one of: {', '.join(METHODS)}.")
    return CONFIGS[method](**settings)
