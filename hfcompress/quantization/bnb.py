"""bitsandbytes: LLM.int8() and NF4/FP4 weights applied at load time through `transformers.BitsAndBytesConfig`.

This backend buys memory, not CPU speed: weights are stored in 8 or 4 bits and dequantized inside its matmul
kernels. It runs on GPU, and on CPU with bitsandbytes >= 0.46.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import torch

from ..errors import HfcompressError, UsageError
from .configs import BnbConfig, BnbInt8Config, BnbNf4Config
from .onnx_export import DEFAULT_CHECK_TEXTS, input_names, saved_model_checks, tokenize_batches

NOTE = (
    "bitsandbytes buys memory, not CPU speed: weights are stored in 8 or 4 bits and dequantized inside its matmul "
    "kernels, whose CPU speed depends on the build and the CPU (see the latency rows); for CPU speed use "
    "onnx-int8-dynamic."
)
CHECK_ROWS = 16
ROUNDTRIP_TOLERANCE = 1e-4  # max |logit difference| between the quantized model and its saved-and-reloaded copy
# bitsandbytes' CPU 4-bit kernel repacks weights in blocks of 64 inputs x 32 outputs.
CPU_4BIT_BLOCK = (64, 32)


def require_bitsandbytes():
    """Import bitsandbytes, or say in one sentence how to install a version that runs here."""
    logger = logging.getLogger("bitsandbytes")
    level = logger.level
    logger.setLevel(logging.ERROR)  # a missing optional CPU kernel package is reported at import; it is optional
    try:
        import bitsandbytes
    except ImportError as err:
        raise HfcompressError(
            "bitsandbytes quantization needs the bitsandbytes package: pip install 'hfcompress[bnb]'."
        ) from err
    finally:
        logger.setLevel(level)
    from packaging.version import Version

    if not torch.cuda.is_available() and Version(bitsandbytes.__version__) < Version("0.46"):
        raise HfcompressError(
            f"bitsandbytes {bitsandbytes.__version__} runs on GPU only and no GPU is visible; bitsandbytes >= 0.46 "
            "also runs on CPU: pip install -U 'hfcompress[bnb]'."
        )
    return bitsandbytes


def device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def plan_modules(model_name: str, config: BnbConfig, trust_remote_code: bool = False) -> dict[str, list[str]]:
    """Which Linear layers get quantized and which stay in full precision, read from an empty (meta) model.

    The classification head and pooler (a causal LM's lm_head) always stay in full precision; so do the caller's
    `skip_modules` and, for 4-bit on CPU, layers whose shape the CPU kernel cannot pack.
    """
    from accelerate import init_empty_weights
    from transformers import AutoConfig
    from transformers.pytorch_utils import Conv1D

    from ..models import auto_class_for

    model_config = AutoConfig.from_pretrained(model_name, trust_remote_code=trust_remote_code)
    with init_empty_weights(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = auto_class_for(model_config).from_config(model_config, trust_remote_code=trust_remote_code)
    prefix = model.base_model_prefix + "."
    linear = {n: m for n, m in model.named_modules() if type(m) is torch.nn.Linear or isinstance(m, Conv1D)}
    head = [n for n in linear if not n.startswith(prefix) or ".pooler." in f".{n}."]
    unsupported = []
    if isinstance(config, BnbNf4Config) and device() == "cpu":
        block_in, block_out = CPU_4BIT_BLOCK
        unsupported = [n for n, m in linear.items() if _in_out(m)[0] % block_in or _in_out(m)[1] % block_out]
    elif config.backend == "torchao":  # torchao quantizes nn.Linear only; int4 needs whole groups of inputs
        group = config.group_size if config.method == "torchao-int4-weight" else 1
        unsupported = [n for n, m in linear.items() if type(m) is not torch.nn.Linear or _in_out(m)[0] % group]
    excluded = set(config.skip_modules or []) | set(getattr(config, "excluded_modules", []))
    skip = sorted(set(head) | excluded | set(unsupported))
    quantized = [n for n in linear if _should_convert(n, skip)]
    return {"quantized": quantized, "kept": sorted(set(linear) - set(quantized)), "skip_patterns": skip,
            "unsupported_shape": sorted(set(unsupported) - set(head))}  # fmt: skip


def check_quantizable(model_name: str, config: BnbConfig, trust_remote_code: bool = False) -> dict[str, list[str]]:
    plan = plan_modules(model_name, config, trust_remote_code)
    if not plan["quantized"]:
        raise UsageError(
            f"'{model_name}' has no Linear layers outside its classification head that {config.method} can "
            "quantize, so there is nothing to quantize."
        )
    return plan


def _in_out(module) -> tuple[int, int]:
    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    return tuple(module.weight.shape)  # Conv1D stores (in, out)


def _should_convert(name: str, patterns: list[str]) -> bool:
    from transformers.quantizers.quantizers_utils import should_convert_module

    return should_convert_module(name, patterns)


def bitsandbytes_config(config: BnbConfig, skip: list[str]):
    from transformers import BitsAndBytesConfig

    if isinstance(config, BnbInt8Config):
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=config.threshold, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=config.quant_type,
        bnb_4bit_use_double_quant=config.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, config.compute_dtype),
        llm_int8_skip_modules=skip,  # transformers applies this list to 4-bit as well
    )


@contextlib.contextmanager
def quiet_warnings():
    """bitsandbytes warns on every CPU int8 matmul that it casts inputs to float16; the note says it once."""
    logger = logging.getLogger("bitsandbytes")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Input type into Linear4bit.*")
            yield
    finally:
        logger.setLevel(level)


def load_bnb(directory: str | Path, quantization_config=None, trust_remote_code: bool = False):
    """A bitsandbytes model: quantized at load from fp32 weights, or reloaded from a saved quantized folder."""
    from transformers import AutoConfig

    from ..models import auto_class_for

    require_bitsandbytes()
    kwargs = {"quantization_config": quantization_config} if quantization_config is not None else {}
    auto_class = auto_class_for(AutoConfig.from_pretrained(directory, trust_remote_code=trust_remote_code))
    with quiet_warnings():
        model = auto_class.from_pretrained(
            directory, device_map={"": device()}, dtype=torch.float32, trust_remote_code=trust_remote_code, **kwargs
        )
    return model.eval()


def bnb_logits_fn(model):
    """`evaluation.torch_logits_fn` with bitsandbytes' per-call cast warnings silenced."""
    from ..evaluation import torch_logits_fn

    logits = torch_logits_fn(model)

    def quiet_logits(batch):
        with quiet_warnings():
            return logits(batch)

    return quiet_logits


def _logits(model, batches) -> list:
    dev = next(model.parameters()).device
    with torch.inference_mode(), quiet_warnings():
        return [model(**{k: v.to(dev) for k, v in b.items()}).logits.float().cpu().numpy() for b in batches]


def quantize_bnb(
    model_dir: str | Path,
    config: BnbConfig,
    output_dir: str | Path,
    tokenizer,
    check_texts=None,
    max_length: int = 128,
    name: str | None = None,
    trust_remote_code: bool = False,
) -> dict:
    """Quantize at load, save, reload and check the reloaded copy gives the same logits; returns what was done."""
    from transformers import AutoConfig

    from ..models import auto_class_for

    require_bitsandbytes()
    name = name or str(model_dir)
    plan = check_quantizable(str(model_dir), config, trust_remote_code)
    model = load_bnb(model_dir, bitsandbytes_config(config, plan["skip_patterns"]), trust_remote_code)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)  # before any forward: CPU kernels repack weights
    tokenizer.save_pretrained(output_dir)
    reloaded = load_bnb(output_dir, trust_remote_code=trust_remote_code)

    auto_class = auto_class_for(AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code))
    reference_model = auto_class.from_pretrained(model_dir, dtype=torch.float32, trust_remote_code=trust_remote_code)
    reference_model.eval()
    names = input_names(reference_model, tokenizer)
    # 16 rows are plenty for a round-trip check, and int8 matmuls are slow on CPU.
    batches = tokenize_batches(tokenizer, list(check_texts or DEFAULT_CHECK_TEXTS)[:CHECK_ROWS], names, max_length)
    reference = _logits(reference_model, batches)
    quantized = _logits(model, batches)
    again = _logits(reloaded, batches)
    checks = saved_model_checks(config.method, name, output_dir, reference, quantized, again, batches,
                                ROUNDTRIP_TOLERANCE)  # fmt: skip
    return {
        "device": device(),
        "quantized_modules": len(plan["quantized"]),
        "kept_in_full_precision": plan["kept"],
        "unsupported_shape": plan["unsupported_shape"],
        "checks": checks,
        "note": NOTE,
    }
