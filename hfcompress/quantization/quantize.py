"""`quantize(model_or_path, config, output_dir)`: one verb, dispatching on the type of `config`."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from ..errors import HfcompressError, UsageError
from .configs import BnbConfig, OnnxConfig, TorchaoConfig


def require_backend(config: OnnxConfig | BnbConfig | TorchaoConfig) -> None:
    """Import the backend `config` needs, or say in one sentence how to install it."""
    if isinstance(config, OnnxConfig):
        try:
            import onnx  # noqa: F401
            import onnxruntime  # noqa: F401
        except ImportError as err:
            raise HfcompressError(
                f"{config.method} needs onnx and onnxruntime ({err.name} is missing): pip install 'hfcompress[onnx]'."
            ) from err
    elif isinstance(config, BnbConfig):
        from .bnb import require_bitsandbytes

        require_bitsandbytes()
    elif isinstance(config, TorchaoConfig):
        from .torchao import require_torchao

        require_torchao()
    else:
        raise UsageError(
            f"Unknown quantization config {type(config).__name__}; pass an OnnxDynamicInt8Config, "
            "OnnxStaticInt8Config, BnbInt8Config, BnbNf4Config or a Torchao*Config."
        )


def quantize(
    model_or_path,
    config: OnnxConfig | BnbConfig | TorchaoConfig,
    output_dir: str | os.PathLike,
    tokenizer=None,
    calibration_texts=None,
    check_texts=None,
    max_length: int = 128,
    trust_remote_code: bool = False,
    task=None,
    splits=None,
) -> dict:
    """Quantize a classifier (any method) or a causal LM (bitsandbytes, torchao) into `output_dir`; returns what
    was done and checked.

    `model_or_path` is a Hub id, alias, local folder or an in-memory `PreTrainedModel` (then pass its
    `tokenizer`). `calibration_texts` (rows of one or two strings from the task's train split) calibrate
    static int8; `check_texts` are the real inputs on which outputs are compared with PyTorch fp32.
    `config.exclude` (a regex on module names) keeps layers in full precision; `config.max_drop` first scans
    each layer's sensitivity on the `task`'s data (`splits`, as `Task.prepare` returns them) and keeps the
    layers that would cost more than that budget (see `sensitivity.py`).
    """
    require_backend(config)
    with _as_folder(model_or_path, tokenizer, trust_remote_code) as (model_dir, tokenizer, name):
        from .partial import resolve_exclusions

        resolve_exclusions(str(model_dir), config, trust_remote_code)
        scan = None
        if config.max_drop is not None:
            from .sensitivity import run_scan

            scan = run_scan(model_dir, config, tokenizer, task, splits, max_length, calibration_texts,
                            trust_remote_code)  # fmt: skip
        if isinstance(config, OnnxConfig):
            from .onnx_runtime import quantize_onnx

            if getattr(config, "calibration_samples", 0) and not calibration_texts:
                raise UsageError(f"{config.method} calibrates on the task's train split; pass calibration_texts.")
            info = quantize_onnx(model_dir, config, output_dir, tokenizer, calibration_texts, check_texts,
                                 max_length, name)  # fmt: skip
        elif isinstance(config, TorchaoConfig):
            from .torchao import quantize_torchao

            info = quantize_torchao(model_dir, config, output_dir, tokenizer, check_texts, max_length, name,
                                    trust_remote_code)  # fmt: skip
        else:
            from .bnb import quantize_bnb

            info = quantize_bnb(model_dir, config, output_dir, tokenizer, check_texts, max_length, name,
                                trust_remote_code)  # fmt: skip
    if scan is not None:
        info["sensitivity"] = scan
    return {"method": config.method, "backend": config.backend, "settings": config.to_dict(),
            "output_dir": str(output_dir), **info}  # fmt: skip


def quantized_backend(directory: str | os.PathLike) -> str | None:
    """ "onnxruntime" for a folder holding model.onnx, "bitsandbytes" or "torchao" for a saved model quantized by
    them, else None."""
    import json

    directory = Path(directory)
    if (directory / "model.onnx").is_file():
        return "onnxruntime"
    config = directory / "config.json"
    if config.is_file():
        quantization = json.loads(config.read_text()).get("quantization_config") or {}
        if quantization.get("quant_method") in ("bitsandbytes", "torchao"):
            return quantization["quant_method"]
    return None


@contextlib.contextmanager
def _as_folder(model_or_path, tokenizer, trust_remote_code: bool):
    """(folder or Hub id, tokenizer, display name); an in-memory model is saved as safetensors to a temp folder."""
    from ..models import check_model_available, load_tokenizer

    if isinstance(model_or_path, (str, os.PathLike)):
        resolved = check_model_available(model_or_path)
        tokenizer = tokenizer or load_tokenizer(resolved, trust_remote_code)
        yield resolved, tokenizer, str(model_or_path)
        return
    if not hasattr(model_or_path, "save_pretrained"):
        raise UsageError(
            f"quantize() takes a model folder, Hub id or PreTrainedModel, not {type(model_or_path).__name__}."
        )
    if tokenizer is None:
        raise UsageError("Pass the tokenizer with an in-memory model; the output folder needs it.")
    with tempfile.TemporaryDirectory(prefix="hfcompress-fp32-") as tmp:
        model_or_path.save_pretrained(tmp, safe_serialization=True)
        yield str(Path(tmp)), tokenizer, type(model_or_path).__name__
