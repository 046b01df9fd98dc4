"""torchao: int8 / int4 weights applied at load through `transformers.TorchAoConfig`, saved as safetensors.

Transformers 5 writes torchao's tensor subclasses to `model.safetensors` (flattened, with torchao's metadata in
the header) and reloads them with plain `from_pretrained`; nothing is pickled. Quantizing while loading is the
public path: a model quantized in memory with `torchao.quantize_` cannot be saved without private hooks.

With torchao 0.18 on CPU, int4 weight-only (`Int4WeightOnlyConfig`) has no kernel in any packing format, so
`torchao-int4-weight` uses `IntxWeightOnlyConfig` there: int4 values in groups, stored one per byte, so it
is no smaller on disk than int8 (said in the report). On CUDA it uses `Int4WeightOnlyConfig` in bfloat16.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from ..errors import HfcompressError
from .configs import TorchaoConfig
from .onnx_export import DEFAULT_CHECK_TEXTS, input_names, saved_model_checks, tokenize_batches

MIN_VERSION = "0.15.0"  # transformers 5 imports torchao's safetensors support only from this version
CHECK_ROWS = 16
ROUNDTRIP_TOLERANCE = 1e-4
NOTE_INT4_CPU = (
    "int4 weight-only on CPU: torchao has no packed int4 CPU kernel, so int4 values are stored one per byte "
    "(no smaller than int8 on disk) and dequantized per matmul; on a CUDA GPU the same method packs two per byte."
)
NOTE = (
    "torchao stores int8 weights with per-row scales; int8 weight-only dequantizes inside the matmul (less memory, "
    "speed depends on the CPU), int8 dynamic also quantizes activations per token at run time."
)


def require_torchao():
    from packaging.version import Version

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logging.getLogger("torchao").setLevel(logging.ERROR)  # optional GPU kernels missing on CPU builds
            import torchao
    except ImportError as err:
        raise HfcompressError(
            "torchao quantization needs the torchao package: pip install 'hfcompress[torchao]'."
        ) from err
    if Version(torchao.__version__.split("+")[0]) < Version(MIN_VERSION):
        raise HfcompressError(
            f"torchao {torchao.__version__} is too old to save safetensors; pip install 'torchao>={MIN_VERSION}'."
        )
    return torchao


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def torchao_config(config: TorchaoConfig, skip: list[str]):
    """The `TorchAoConfig` for one method, keeping `skip` (head, user's modules) in full precision."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig
    from transformers import TorchAoConfig

    if config.method == "torchao-int8-weight":
        quant = Int8WeightOnlyConfig()
    elif config.method == "torchao-int8-dynamic":
        quant = Int8DynamicActivationInt8WeightConfig()
    elif device() == "cuda":
        from torchao.quantization import Int4WeightOnlyConfig

        quant = Int4WeightOnlyConfig(group_size=config.group_size)
    else:
        from torchao.quantization import IntxWeightOnlyConfig
        from torchao.quantization.granularity import PerGroup

        quant = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(config.group_size))
    return TorchAoConfig(quant_type=quant, modules_to_not_convert=skip or None)


def compute_dtype(config: TorchaoConfig) -> torch.dtype:
    # torchao's CUDA int4 kernel takes bfloat16 only; everything else runs in float32 here.
    return torch.bfloat16 if config.method == "torchao-int4-weight" and device() == "cuda" else torch.float32


def load_torchao(directory, quantization_config=None, dtype=torch.float32, trust_remote_code: bool = False):
    """A torchao model: quantized at load from full-precision weights, or reloaded from a saved torchao folder."""
    from transformers import AutoConfig

    from ..models import auto_class_for

    require_torchao()
    kwargs = {"quantization_config": quantization_config} if quantization_config is not None else {}
    auto_class = auto_class_for(AutoConfig.from_pretrained(directory, trust_remote_code=trust_remote_code))
    model = auto_class.from_pretrained(directory, device_map={"": device()}, dtype=dtype,
                                       trust_remote_code=trust_remote_code, **kwargs)  # fmt: skip
    return model.eval()


def _logits(model, batches) -> list:
    dev = next(model.parameters()).device
    with torch.inference_mode():
        return [model(**{k: v.to(dev) for k, v in b.items()}).logits.float().cpu().numpy() for b in batches]


def quantize_torchao(model_dir, config: TorchaoConfig, output_dir, tokenizer, check_texts=None, max_length: int = 128,
                     name: str | None = None, trust_remote_code: bool = False) -> dict:  # fmt: skip
    """Quantize at load, save safetensors, reload and check the reloaded copy gives the same logits."""
    from .bnb import check_quantizable

    require_torchao()
    name = name or str(model_dir)
    plan = check_quantizable(str(model_dir), config, trust_remote_code)
    dtype = compute_dtype(config)
    model = load_torchao(model_dir, torchao_config(config, plan["skip_patterns"]), dtype, trust_remote_code)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    if list(output_dir.glob("*.bin")) or list(output_dir.glob("*.pt")):
        raise HfcompressError(f"torchao wrote a pickle for {config.method}; the folder '{output_dir}' is not used.")
    reloaded = load_torchao(output_dir, dtype=dtype, trust_remote_code=trust_remote_code)

    reference_model = load_torchao(model_dir, dtype=torch.float32, trust_remote_code=trust_remote_code)
    names = input_names(reference_model, tokenizer)
    batches = tokenize_batches(tokenizer, list(check_texts or DEFAULT_CHECK_TEXTS)[:CHECK_ROWS], names, max_length)
    reference, quantized = _logits(reference_model, batches), _logits(model, batches)
    again = _logits(reloaded, batches)
    checks = saved_model_checks(config.method, name, output_dir, reference, quantized, again, batches,
                                ROUNDTRIP_TOLERANCE)  # fmt: skip
    int4_cpu = config.method == "torchao-int4-weight" and device() == "cpu"
    return {
        "device": device(),
        "dtype": str(dtype).removeprefix("torch."),
        "torchao_config": type(torchao_config(config, []).quant_type).__name__,
        "quantized_modules": len(plan["quantized"]),
        "kept_in_full_precision": plan["kept"],
        "unsupported_shape": plan["unsupported_shape"],
        "checks": checks,
        "note": NOTE_INT4_CPU if int4_cpu else NOTE,
    }
