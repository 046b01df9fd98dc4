"""Sharded engines (FSDP, DeepSpeed ZeRO-3): what the distillation trainer and the pruning callback need from them.

- The teacher is sharded like the student under FSDP (FSDP2 through accelerate's own `fsdp2_prepare_model`,
  FSDP1 through a plain `FullyShardedDataParallel` wrap), frozen, in eval mode and never in the optimizer.
- Pruning masks are computed on full weights: `full_weights` gathers FSDP2's DTensor shards into whole tensors
  and writes each rank's part of any change back to its shard.
- DeepSpeed ZeRO-3 and FSDP1 are refused where they would silently give wrong results.

Accelerate (1.15) only shards on accelerators: with `--use_cpu` it ignores an FSDP plugin and runs DDP, and
it turns DeepSpeed off, which is why the CLI refuses both on CPU (`training.check_processes`).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from .errors import UsageError


def fsdp_version(accelerator) -> int | None:
    """1 or 2 when the accelerator shards models with FSDP, else None."""
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    if plugin is None:
        return None
    return int(getattr(plugin, "fsdp_version", 1) or 1)


def zero3_enabled(accelerator) -> bool:
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return plugin is not None and getattr(plugin, "zero_stage", None) == 3


def prepare_teacher(teacher: nn.Module, accelerator) -> nn.Module:
    """The frozen teacher, placed and (under FSDP) sharded like the student; it takes no part in training."""
    teacher.eval()
    teacher.requires_grad_(False)
    if zero3_enabled(accelerator):
        raise UsageError(
            "DeepSpeed ZeRO-3 is not supported with a teacher: its parameters would be partitioned without an "
            "inference engine of their own; use FSDP (fsdp_config version 2) or ZeRO stage 1 or 2."
        )
    version = fsdp_version(accelerator)
    if version == 2:
        from accelerate.utils import fsdp2_prepare_model

        # The student's own recipe (wrap policy, mesh, mixed precision), minus the optimizer.
        teacher = fsdp2_prepare_model(accelerator, teacher)
    elif version == 1:
        teacher = _fsdp1_wrap(teacher, accelerator)
    else:  # DDP, ZeRO 1-2, one process: a full replica on this process's device
        return accelerator.prepare_model(teacher, evaluation_mode=True)
    return teacher.eval()


def _fsdp1_wrap(model: nn.Module, accelerator) -> nn.Module:
    from torch.distributed.fsdp import FullyShardedDataParallel

    if isinstance(model, FullyShardedDataParallel):
        return model
    plugin = accelerator.state.fsdp_plugin
    plugin.set_auto_wrap_policy(model)
    return FullyShardedDataParallel(
        model,
        sharding_strategy=plugin.sharding_strategy or plugin.reshard_after_forward,
        cpu_offload=plugin.cpu_offload,
        auto_wrap_policy=plugin.auto_wrap_policy,
        mixed_precision=plugin.mixed_precision_policy,
        sync_module_states=plugin.sync_module_states,
        forward_prefetch=plugin.forward_prefetch,
        use_orig_params=plugin.use_orig_params,
        limit_all_gathers=plugin.limit_all_gathers,
        device_id=accelerator.device,
    )


def is_fsdp2_model(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules())


def check_prunable_engine(model: nn.Module) -> None:
    """Refuse sharded layouts whose weights the pruning callback cannot see whole."""
    from torch.distributed.fsdp import FullyShardedDataParallel

    if any(hasattr(p, "ds_id") for p in model.parameters()):
        raise UsageError(
            "Pruning does not support DeepSpeed ZeRO-3: each process holds only a partition of every weight, so "
            "masks would not be computed on full weights; use FSDP (fsdp_config version 2) or ZeRO stage 1 or 2."
        )
    if any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
        raise UsageError("Pruning under FSDP needs FSDP2 (fsdp_config version 2, the default), not FSDP1.")


def reshard(root: nn.Module | None) -> None:
    """Put every FSDP2 unit back in its sharded state (a forward can leave some holding gathered weights)."""
    if root is None:
        return
    from torch.distributed.fsdp import FSDPModule

    for module in root.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


@contextmanager
def full_weights(modules, root: nn.Module | None = None):
    """Inside, the FSDP2 (DTensor) parameters of `modules` are whole tensors, the same on every rank; on a
    normal exit, each rank copies its part of them back into its shard. Without FSDP2 it does nothing.

    Every rank must enter it at the same point (it all-gathers). `root`, the sharded model, is resharded first.
    """
    from torch.distributed.tensor import DTensor, distribute_tensor

    modules = list(modules)
    reshard(root)
    if not any(isinstance(p, DTensor) for m in modules for p in m.parameters(recurse=False)):
        yield
        return
    swapped, whole = [], {}
    for module in modules:
        for name, param in list(module._parameters.items()):
            if isinstance(param, DTensor):
                if id(param) not in whole:  # a parameter shared by two modules is gathered once
                    whole[id(param)] = nn.Parameter(param.full_tensor(), requires_grad=param.requires_grad)
                module._parameters[name] = whole[id(param)]
                swapped.append((module, name, param))
    try:
        yield
        with torch.no_grad():
            done = set()
            for _, _, param in swapped:
                if id(param) in done:
                    continue
                done.add(id(param))
                full = whole[id(param)].detach()
                # src_data_rank=None: each rank cuts its own part from its (identical) full copy, no messages.
                local = distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None)
                param.to_local().copy_(local.to_local())
    finally:
        for module, name, param in swapped:
            module._parameters[name] = param


def gathered_model(model: nn.Module) -> nn.Module:
    """An FSDP2-sharded model rebuilt as a plain one holding its full weights (every rank must call this, as it
    all-gathers); any other model is returned as it is. The main process can then save, measure and push it
    alone, as after any other run."""
    if not is_fsdp2_model(model):
        return model
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    reshard(model)
    state = {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in model.state_dict().items()}
    plain_class = next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))  # fully_shard subclasses
    with torch.device("meta"):
        plain = plain_class(model.config)
    plain.load_state_dict(state, strict=True, assign=True)
    for name, buffer in model.named_buffers():  # non-persistent buffers (position ids, rotary tables)
        owner, _, leaf = name.rpartition(".")
        module = plain.get_submodule(owner)
        if module._buffers.get(leaf) is not None and module._buffers[leaf].is_meta:
            module._buffers[leaf] = buffer.detach().clone()
    if hasattr(plain, "tie_weights"):
        plain.tie_weights()
    if getattr(model, "generation_config", None) is not None and hasattr(plain, "generation_config"):
        plain.generation_config = model.generation_config
    return plain.train(model.training)
