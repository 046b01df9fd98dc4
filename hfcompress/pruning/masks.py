"""Which weights to prune, and magnitude masks for them. Independent of any schedule."""

from __future__ import annotations

import re

import torch
from torch import nn

from ..architecture import find_layer_list, is_projection
from ..errors import UsageError


def prunable_modules(model: nn.Module, pattern: str | None = None) -> dict[str, nn.Module]:
    """Modules whose `weight` is pruned, by name.

    Default: every nn.Linear (or GPT-2 Conv1D) inside the transformer blocks, so embeddings, norms,
    biases, the classifier and a language model's lm_head are left alone. `pattern` (a regex searched in module
    names) selects Linear, Conv1D or Embedding modules anywhere instead.
    """
    if pattern is None:
        parent, attr, _ = find_layer_list(model)
        prefix = next(name for name, module in model.named_modules() if module is parent)
        stack = f"{prefix}.{attr}." if prefix else f"{attr}."
        chosen = {n: m for n, m in model.named_modules() if is_projection(m) and n.startswith(stack)}
    else:
        regex = re.compile(pattern)
        chosen = {
            n: m
            for n, m in model.named_modules()
            if (is_projection(m) or isinstance(m, nn.Embedding)) and regex.search(n)
        }
    if not chosen:
        raise UsageError(
            f"No prunable Linear layers match {pattern!r} in this model."
            if pattern
            else "This model has no Linear layers inside its transformer blocks to prune."
        )
    return chosen


def _smallest_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean keep-mask that drops exactly the `k` smallest scores (ties broken by position)."""
    flat = scores.flatten()
    keep = torch.ones_like(flat, dtype=torch.bool)
    if k <= 0:
        return keep.view_as(scores)
    if k >= flat.numel():
        return torch.zeros_like(keep).view_as(scores)
    threshold = torch.kthvalue(flat, k).values
    below = flat < threshold
    keep[below] = False
    ties = torch.nonzero(flat == threshold).flatten()
    keep[ties[: k - int(below.sum())]] = False
    return keep.view_as(scores)


def unstructured_masks(weights: dict[str, torch.Tensor], sparsity: float, scope: str) -> dict[str, torch.Tensor]:
    """Keep-masks zeroing the smallest-magnitude fraction `sparsity` of weights, globally or per layer."""
    if scope == "per-layer":
        return {n: _smallest_k_mask(w.abs(), round(sparsity * w.numel())) for n, w in weights.items()}
    names = list(weights)
    flat = torch.cat([weights[n].detach().abs().flatten().float() for n in names])
    keep = _smallest_k_mask(flat, round(sparsity * flat.numel()))
    masks, offset = {}, 0
    for n in names:
        size = weights[n].numel()
        masks[n] = keep[offset : offset + size].view_as(weights[n])
        offset += size
    return masks


def check_two_four(weights: dict[str, torch.Tensor]) -> None:
    for name, w in weights.items():
        if w.shape[-1] % 4:
            raise UsageError(f"2:4 pruning needs input widths that are multiples of 4, but {name} has {w.shape[-1]}.")


def two_four_masks(weights: dict[str, torch.Tensor], sparsity: float, scope: str) -> dict[str, torch.Tensor]:
    """Masks that end as 2:4 (in every 4 consecutive input weights, the 2 largest stay).

    Gradually: at sparsity s < 0.5, only the smallest of the two candidates-for-removal per group are
    dropped, globally or per layer, until every group has lost its two smallest at s = 0.5.
    """
    scores = {}
    for name, w in weights.items():
        groups = w.detach().abs().float().reshape(-1, 4)
        order = groups.argsort(dim=1)
        is_candidate = torch.zeros_like(groups, dtype=torch.bool)
        is_candidate.scatter_(1, order[:, :2], True)
        # Non-candidates get +inf so they are never among the smallest.
        scores[name] = torch.where(is_candidate, groups, torch.full_like(groups, float("inf"))).view_as(w)
    return unstructured_masks(scores, sparsity, scope)


def sparsity_of(masks: dict[str, torch.Tensor]) -> float:
    total = sum(m.numel() for m in masks.values())
    return sum(int((~m).sum()) for m in masks.values()) / total if total else 0.0
