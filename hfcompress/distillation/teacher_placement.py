"""The dtype the frozen teacher runs in (`--teacher-dtype`) and where it ended up, for the report.

The teacher only runs forward passes under no_grad, so half precision halves its memory and, on GPUs, speeds it
up, while the losses upcast its outputs to float32 (losses.py). `auto` picks bfloat16 on CUDA GPUs that support
it and float16 on older ones; elsewhere it keeps the teacher as loaded, since bfloat16 matmuls are slow on most
CPUs. Under FSDP the mixed-precision policy sets the compute dtype, so the teacher is left as loaded.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from ..errors import UsageError


def teacher_dtype(args, device: torch.device | str | None = None, sharded: bool | None = None) -> torch.dtype | None:
    """The dtype `args.teacher_dtype` asks for on the training `device` (default: `args.device`), or None to keep
    the teacher as loaded. `sharded` (FSDP), when not given, is read from the arguments and accelerate's launch
    environment, as the Trainer will see it."""
    choice = getattr(args, "teacher_dtype", "auto")
    if sharded is None:
        sharded = bool(getattr(args, "fsdp", None)) or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    if sharded:
        if choice != "auto":
            raise UsageError(f"--teacher-dtype {choice} cannot be used under FSDP, where the FSDP mixed-precision "
                             "policy sets the teacher's dtype; leave --teacher-dtype at auto.")  # fmt: skip
        return None
    if choice != "auto":
        return getattr(torch, choice)
    device = torch.device(device if device is not None else args.device)
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def floating_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating-point parameter (None without one)."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def cast_teacher(teacher: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    """`teacher` in `dtype`, in place and one tensor at a time, so no second full copy is ever held."""
    if dtype is None or floating_dtype(teacher) in (None, dtype):
        return teacher
    return teacher.to(dtype)


def placement(model: nn.Module | None) -> dict | None:
    """{"device": "cpu" | "cuda:0" ..., "dtype": "bfloat16" ...}, read off the model's parameters."""
    if model is None:
        return None
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    if param is None:
        return None
    return {"device": str(param.device), "dtype": str(param.dtype).removeprefix("torch.")}
