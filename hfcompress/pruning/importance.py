"""Activation importance for Minitron-style structured pruning, from calibration data, one block at a time.

Following Minitron (Muralidharan et al., 2024): an FFN neuron's importance is the size of its activation (the
input of `down_proj`), an attention head's the size of its output (its slice of `o_proj`'s input), a hidden
(embedding) channel's the size of the normalisation layers' outputs in that channel; each aggregated as an L2
norm over the calibration tokens. A block's importance for depth pruning is 1 - cos(input, output) averaged
over tokens (ShortGPT's Block Influence): a block that barely turns the residual stream matters little.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..architecture import find_layer_list
from .calibration import _first_tensor, _with_hidden, capture_first_block_inputs


@dataclass
class Importance:
    neurons: list[torch.Tensor]  # per block: (intermediate_size,)
    heads: list[torch.Tensor]  # per block: (num_attention_heads,)
    channels: torch.Tensor  # (hidden_size,)
    blocks: torch.Tensor  # (num_layers,): 1 - mean cosine(input, output)


class _SquaredSums:
    """Sum over real tokens of x**2 per feature, for inputs (or outputs) of shape (batch, seq, features)."""

    def __init__(self, width: int):
        self.total = torch.zeros(width, dtype=torch.float64)
        self.token_mask: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).float()
        if self.token_mask is not None:
            x = x[self.token_mask.reshape(-1).to(x.device)]
        self.total += x.pow(2).sum(dim=0).double().cpu()


def block_parts(block: nn.Module) -> tuple[nn.Module, nn.Module, list[nn.Module]]:
    """(o_proj, down_proj, [input norm, post-attention norm]) of a Llama-layout decoder block."""
    return block.self_attn.o_proj, block.mlp.down_proj, [block.input_layernorm, block.post_attention_layernorm]


@torch.no_grad()
def collect_importance(model: nn.Module, batches, width: bool, progress: bool = True) -> Importance:
    """Run the calibration batches through the model block by block, gathering every importance score.

    `width=False` gathers only the block (depth) scores, which need nothing but the blocks' inputs and outputs,
    so depth works for any family with a list of blocks.
    """
    from tqdm.auto import tqdm

    config = model.config
    _, _, layers = find_layer_list(model)
    inputs = capture_first_block_inputs(model, batches)
    neurons, heads, block_scores = [], [], []
    channels = None
    for block in tqdm(layers, desc="Scoring blocks", disable=not progress):
        handles, sums = [], []
        if width:
            o_proj, down, norms = block_parts(block)
            head_sums, neuron_sums = _SquaredSums(o_proj.in_features), _SquaredSums(down.in_features)
            norm_sums = [_SquaredSums(norm.weight.shape[0]) for norm in norms]
            sums = [head_sums, neuron_sums, *norm_sums]
            handles = [
                o_proj.register_forward_hook(lambda m, a, o, s=head_sums: s.add(a[0])),
                down.register_forward_hook(lambda m, a, o, s=neuron_sums: s.add(a[0])),
                *[n.register_forward_hook(lambda m, a, o, s=s: s.add(o)) for n, s in zip(norms, norm_sums)],
            ]
        cosine_total, tokens = 0.0, 0
        try:
            for i, (args, kwargs, mask) in enumerate(inputs):
                token_mask = mask.bool() if mask is not None and mask.dim() == 2 else None
                for s in sums:
                    s.token_mask = token_mask
                hidden_in = args[0] if args else kwargs["hidden_states"]
                hidden_out = _first_tensor(block(*args, **kwargs))
                cos = nn.functional.cosine_similarity(hidden_in.float(), hidden_out.float(), dim=-1)
                if token_mask is not None:
                    cos = cos[token_mask.to(cos.device)]
                cosine_total += cos.sum().item()
                tokens += cos.numel()
                inputs[i] = (*_with_hidden(args, kwargs, hidden_out), mask)
        finally:
            for handle in handles:
                handle.remove()
        block_scores.append(1.0 - cosine_total / max(tokens, 1))
        if width:
            heads.append(head_sums.total.reshape(config.num_attention_heads, -1).sum(dim=1).sqrt())
            neurons.append(neuron_sums.total.sqrt())
            layer_channels = sum(s.total.sqrt() for s in norm_sums)
            channels = layer_channels if channels is None else channels + layer_channels
    return Importance(neurons, heads, channels, torch.tensor(block_scores, dtype=torch.float64))


def top_indices(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the `keep` highest scores, in their original order (so kept weights keep their layout)."""
    return scores.argsort(descending=True, stable=True)[:keep].sort().values


def choose_heads(scores: torch.Tensor, kv_heads: int, keep_kv: int, keep_heads: int) -> tuple[torch.Tensor, ...]:
    """(kept key/value groups, kept query heads) of one layer.

    A group's importance is the sum of its query heads'. The `keep_kv` best groups stay, and in each of them the
    `keep_heads // keep_kv` best query heads, so every group keeps the same number of query heads (GQA).
    """
    per_group = scores.numel() // kv_heads
    grouped = scores.reshape(kv_heads, per_group)
    groups = top_indices(grouped.sum(dim=1), keep_kv)
    per_kept = keep_heads // keep_kv
    query = [g * per_group + top_indices(grouped[g], per_kept) for g in groups.tolist()]
    return groups, torch.cat(query)
