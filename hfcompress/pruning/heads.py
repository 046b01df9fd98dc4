"""Structured pruning of attention heads, where the config can say so.

Transformers 5 has no per-layer `pruned_heads`, and encoder families (BERT, RoBERTa, DistilBERT, ELECTRA)
derive the head size from hidden_size / num_attention_heads, so a model with fewer heads cannot be saved
to load with plain `from_pretrained`: those get a clear error. Families whose config states `head_dim`
and `num_key_value_heads` (Llama, Qwen2, Mistral ...) can: the same number of key/value heads, each with
its group of query heads, is removed from every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..architecture import find_layer_list
from ..errors import UsageError
from .ffn import _replace, _sliced

ENCODER_MESSAGE = (
    "'{model_type}' models derive the attention head size from hidden_size / num_attention_heads and "
    "transformers 5 has no per-layer pruned_heads, so a model with fewer heads could not be saved to load with "
    "from_pretrained; use --structure ffn, which shrinks the feed-forward layers instead."
)


@dataclass
class Attention:
    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    o: nn.Linear


def check_head_pruning(config) -> tuple[int, int, int]:
    """(query heads, key/value heads, head size) of a config that can express fewer heads, else an error."""
    explicit = config.to_dict()
    if "head_dim" not in explicit or "num_key_value_heads" not in explicit:
        raise UsageError(ENCODER_MESSAGE.format(model_type=config.model_type))
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    head_dim = config.head_dim or config.hidden_size // heads
    return heads, kv_heads, head_dim


def find_attentions(model: nn.Module) -> list[Attention]:
    _, _, blocks = find_layer_list(model)
    found = []
    for block in blocks:
        parts = {name.rsplit(".", 1)[-1]: m for name, m in block.named_modules() if isinstance(m, nn.Linear)}
        if not {"q_proj", "k_proj", "v_proj", "o_proj"} <= set(parts):
            raise UsageError("Head pruning needs q_proj, k_proj, v_proj and o_proj Linear layers in every block.")
        found.append(Attention(parts["q_proj"], parts["k_proj"], parts["v_proj"], parts["o_proj"]))
    return found


def _index(groups: torch.Tensor, per_group: int, head_dim: int) -> torch.Tensor:
    """Row (or column) indices of the heads in `groups` when each group holds `per_group` heads."""
    heads = (groups[:, None] * per_group + torch.arange(per_group)[None, :]).flatten()
    return (heads[:, None] * head_dim + torch.arange(head_dim)[None, :]).flatten()


def group_scores(att: Attention, heads: int, kv_heads: int, head_dim: int) -> torch.Tensor:
    """Magnitude of each key/value group: norms of its k/v rows, its query rows and its o_proj columns."""
    per_group = heads // kv_heads
    q = att.q.weight.detach().float().reshape(kv_heads, per_group * head_dim, -1).norm(dim=(1, 2))
    k = att.k.weight.detach().float().reshape(kv_heads, head_dim, -1).norm(dim=(1, 2))
    v = att.v.weight.detach().float().reshape(kv_heads, head_dim, -1).norm(dim=(1, 2))
    o = att.o.weight.detach().float().reshape(-1, kv_heads, per_group * head_dim).norm(dim=(0, 2))
    return q + k + v + o


def group_masks(atts: list[Attention], removed: int, heads: int, kv_heads: int, head_dim: int) -> list[torch.Tensor]:
    masks = []
    for att in atts:
        keep = torch.ones(kv_heads, dtype=torch.bool)
        if removed:
            keep[group_scores(att, heads, kv_heads, head_dim).argsort()[:removed]] = False
        masks.append(keep)
    return masks


@torch.no_grad()
def apply_group_masks(atts, masks, heads: int, kv_heads: int, head_dim: int) -> None:
    per_group = heads // kv_heads
    for att, keep in zip(atts, masks):
        dropped = torch.nonzero(~keep).flatten()
        if not len(dropped):
            continue
        q_rows, kv_rows = _index(dropped, per_group, head_dim), _index(dropped, 1, head_dim)
        att.q.weight[q_rows] = 0
        att.k.weight[kv_rows] = 0
        att.v.weight[kv_rows] = 0
        att.o.weight[:, q_rows] = 0
        for linear, rows in ((att.q, q_rows), (att.k, kv_rows), (att.v, kv_rows)):
            if linear.bias is not None:
                linear.bias[rows] = 0


@torch.no_grad()
def shrink_heads(model: nn.Module, masks: list[torch.Tensor]) -> tuple[int, int]:
    """Remove masked head groups for good and update the config; returns the new (heads, kv heads)."""
    heads, kv_heads, head_dim = check_head_pruning(model.config)
    per_group = heads // kv_heads
    kept = {int(m.sum()) for m in masks}
    if len(kept) != 1:
        raise UsageError("Head masks must keep the same number of heads in every layer.")
    for att, keep in zip(find_attentions(model), masks):
        groups = torch.nonzero(keep).flatten()
        q_rows, kv_rows = _index(groups, per_group, head_dim), _index(groups, 1, head_dim)
        _replace(model, att.q, _sliced(att.q, rows=q_rows))
        _replace(model, att.k, _sliced(att.k, rows=kv_rows))
        _replace(model, att.v, _sliced(att.v, rows=kv_rows))
        _replace(model, att.o, _sliced(att.o, cols=q_rows))
    new_kv = kept.pop()
    model.config.head_dim = head_dim
    model.config.num_key_value_heads = new_kv
    model.config.num_attention_heads = new_kv * per_group
    return model.config.num_attention_heads, new_kv
