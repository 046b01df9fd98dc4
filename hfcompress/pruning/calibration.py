"""Calibration one transformer block at a time, so memory holds one block's activations, not the network's.

The model runs once, up to its first block, to capture that block's inputs for every calibration batch.
Then, block by block: run the block on the captured inputs while hooks gather statistics of the inputs
of its Linear layers, let the caller prune it, and run it again so its (pruned) outputs become the next
block's inputs, as the Wanda and SparseGPT papers do. Each block is visited once, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from ..architecture import find_layer_list, in_out


class _Captured(Exception):
    pass


class InputStatistics:
    """Per Linear layer: the squared L2 norm of each input feature (Wanda) and, if asked, H = 2 X^T X / n."""

    def __init__(self, module: nn.Module, hessian: bool):
        in_features, _ = in_out(module)
        device = module.weight.device
        self.squared_norms = torch.zeros(in_features, dtype=torch.float32, device=device)
        self.hessian = torch.zeros(in_features, in_features, device=device) if hessian else None
        self.tokens = 0
        self.token_mask: torch.Tensor | None = None  # set per batch: which positions are real tokens

    def add(self, inputs: torch.Tensor) -> None:
        x = inputs.detach().reshape(-1, inputs.shape[-1]).float()
        if self.token_mask is not None:
            x = x[self.token_mask.reshape(-1).to(x.device)]
        self.squared_norms += x.pow(2).sum(dim=0)
        if self.hessian is not None:
            n = x.shape[0]  # running mean of 2 x x^T over tokens
            self.hessian *= self.tokens / (self.tokens + n) if self.tokens + n else 0.0
            self.hessian += (2.0 / (self.tokens + n)) * (x.t() @ x)
        self.tokens += x.shape[0]

    @property
    def input_norms(self) -> torch.Tensor:
        return self.squared_norms.sqrt()


def _first_tensor(output):
    return output[0] if isinstance(output, (tuple, list)) else output


def _with_hidden(args: tuple, kwargs: dict, hidden: torch.Tensor) -> tuple[tuple, dict]:
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


@torch.no_grad()
def capture_first_block_inputs(model: nn.Module, batches: Iterable[dict]) -> list[tuple[tuple, dict, torch.Tensor]]:
    """(args, kwargs, token mask) of the first block's call for every batch; the rest of the model never runs."""
    _, _, layers = find_layer_list(model)
    captured = []

    def hook(module, args, kwargs):
        captured.append((args, kwargs))
        raise _Captured

    handle = layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    extra = {"use_cache": False} if getattr(model.config, "use_cache", None) is not None else {}
    device = next(model.parameters()).device
    masks = []
    try:
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            masks.append(batch.get("attention_mask"))
            try:
                model(**batch, **extra)
            except _Captured:
                pass
    finally:
        handle.remove()
    return [(args, kwargs, mask) for (args, kwargs), mask in zip(captured, masks, strict=True)]


@torch.no_grad()
def prune_block_by_block(
    model: nn.Module,
    batches: Iterable[dict],
    modules: dict[str, nn.Module],
    prune_block: Callable[[int, dict[str, nn.Module], dict[str, InputStatistics]], None],
    hessian: bool,
    progress: bool = True,
    desc: str = "Pruning blocks",
) -> list[dict]:
    """Calibrate and prune every block in order; returns, per block, the relative change of its outputs.

    `modules` are the Linear layers to prune (by full name); `prune_block(index, modules, statistics)` prunes
    those of one block in place.
    """
    from tqdm.auto import tqdm

    parent, attr, layers = find_layer_list(model)
    prefix = next(name for name, module in model.named_modules() if module is parent)
    stack = f"{prefix}.{attr}" if prefix else attr
    inputs = capture_first_block_inputs(model, batches)
    summary = []
    for index in tqdm(range(len(layers)), desc=desc, disable=not progress):
        block = layers[index]
        own = {n: m for n, m in modules.items() if n.startswith(f"{stack}.{index}.")}
        stats = {n: InputStatistics(m, hessian) for n, m in own.items()}
        handles = [m.register_forward_hook(lambda mod, args, out, s=stats[n]: s.add(args[0])) for n, m in own.items()]
        dense_outputs = []
        try:
            for args, kwargs, mask in inputs:
                for s in stats.values():
                    s.token_mask = mask.bool() if mask is not None and mask.dim() == 2 else None
                dense_outputs.append(_first_tensor(block(*args, **kwargs)))
        finally:
            for handle in handles:
                handle.remove()
        if own:
            prune_block(index, own, stats)
        del stats
        change, norm = 0.0, 0.0
        for i, (args, kwargs, mask) in enumerate(inputs):
            pruned = _first_tensor(block(*args, **kwargs))
            change += (pruned - dense_outputs[i]).float().pow(2).sum().item()
            norm += dense_outputs[i].float().pow(2).sum().item()
            inputs[i] = (*_with_hidden(args, kwargs, pruned), mask)
        del dense_outputs
        summary.append({"block": index, "layers": len(own), "relative_output_change": (change / norm) ** 0.5
                        if norm else 0.0})  # fmt: skip
    return summary


def calibration_batches(dataset, collator, samples: int, batch_size: int, seed: int) -> list[dict]:
    """`samples` rows of `dataset` drawn without replacement (seeded), collated in batches."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=generator)[:samples].tolist()
    rows = [dataset[i] for i in sorted(order)]
    keep = {"input_ids", "attention_mask", "token_type_ids"}
    rows = [{k: v for k, v in row.items() if k in keep} for row in rows]
    return [collator(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)]
