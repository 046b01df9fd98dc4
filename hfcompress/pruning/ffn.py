"""Structured pruning of feed-forward neurons: the same number removed in every layer, so the config
can say the new `intermediate_size` and the smaller model loads with plain `from_pretrained`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..architecture import find_layer_list, in_out, is_projection, oriented_weight
from ..errors import UsageError

# Config keys that hold the FFN width, by family: BERT/RoBERTa/ELECTRA/Llama, DistilBERT, GPT-2.
_SIZE_KEYS = ("intermediate_size", "hidden_dim", "n_inner", "ffn_dim")


@dataclass
class FeedForward:
    """One block's FFN: projections into the intermediate width (`up`, with `gate` for GLU) and out of it.

    Projections are nn.Linear or GPT-2's Conv1D; weights are read and written through (out, in) views.
    """

    up: list[nn.Module]
    down: nn.Module


def intermediate_size(config) -> tuple[str, int]:
    for key in _SIZE_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int):
            return key, value
    raise UsageError(f"Cannot find the feed-forward width of a '{config.model_type}' model in its config.")


def find_feed_forwards(model: nn.Module) -> list[FeedForward]:
    """Each transformer block's FFN, found by shape: Linear layers out to, and in from, the FFN width."""
    _, width = intermediate_size(model.config)
    _, _, blocks = find_layer_list(model)
    found = []
    for block in blocks:
        linears = [m for m in block.modules() if is_projection(m)]
        up = [m for m in linears if in_out(m)[1] == width and in_out(m)[0] != width]
        down = [m for m in linears if in_out(m)[0] == width and in_out(m)[1] != width]
        if not up or len(down) != 1:
            raise UsageError(
                f"Could not find the feed-forward layers (width {width}) of a '{model.config.model_type}' block; "
                "FFN pruning needs Linear (or Conv1D) projections into and out of the intermediate size."
            )
        found.append(FeedForward(up=up, down=down[0]))
    return found


def check_ffn_target(model: nn.Module, sparsity: float, ffn_size: int | None) -> int:
    """Neurons to keep per layer; refuses a target that is not smaller than the current width."""
    _, width = intermediate_size(model.config)
    if ffn_size is not None:
        if not 0 < ffn_size < width:
            raise UsageError(f"--ffn-size {ffn_size} must be between 1 and the current FFN size {width} (exclusive).")
        return ffn_size
    keep = width - round(sparsity * width)
    if keep < 1:
        raise UsageError(f"Sparsity {sparsity} would remove every one of the {width} FFN neurons.")
    return keep


def neuron_scores(ffn: FeedForward) -> torch.Tensor:
    """Magnitude importance of each neuron: L2 norms of its rows in the up projections and its down column."""
    score = oriented_weight(ffn.down).detach().float().norm(dim=0)
    for up in ffn.up:
        score = score + oriented_weight(up).detach().float().norm(dim=1)
    return score


def neuron_masks(
    ffns: list[FeedForward], removed: int, scores: list[torch.Tensor] | None = None
) -> list[torch.Tensor]:
    """Per layer, a keep-mask over neurons that drops the `removed` least important (same count everywhere).

    Importance is `scores` (one tensor per layer, e.g. from activations) or, without them, weight magnitude.
    """
    masks = []
    for index, ffn in enumerate(ffns):
        layer_scores = scores[index].to(oriented_weight(ffn.down).device) if scores is not None else neuron_scores(ffn)
        keep = torch.ones_like(layer_scores, dtype=torch.bool)
        if removed > 0:
            keep[layer_scores.argsort()[:removed]] = False
        masks.append(keep)
    return masks


@torch.no_grad()
def apply_neuron_masks(ffns: list[FeedForward], masks: list[torch.Tensor]) -> None:
    for ffn, keep in zip(ffns, masks):
        for up in ffn.up:
            oriented_weight(up)[~keep] = 0
            if up.bias is not None:
                up.bias[~keep] = 0
        oriented_weight(ffn.down)[:, ~keep] = 0


def _sliced(linear: nn.Module, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Module:
    """A smaller copy of a Linear or Conv1D keeping output `rows` and input `cols` (of its (out, in) weight)."""
    from transformers.pytorch_utils import Conv1D

    weight = oriented_weight(linear).detach()
    weight = weight[rows] if rows is not None else weight
    weight = weight[:, cols] if cols is not None else weight
    if isinstance(linear, Conv1D):
        new = Conv1D(weight.shape[0], weight.shape[1]).to(device=weight.device, dtype=weight.dtype)
        new.weight.data.copy_(weight.t())
    else:
        new = nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None)
        new = new.to(device=weight.device, dtype=weight.dtype)
        new.weight.data.copy_(weight)
    if linear.bias is not None:
        new.bias.data.copy_(linear.bias.detach()[rows] if rows is not None else linear.bias.detach())
    return new


def _replace(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    for parent in model.modules():
        for name, child in parent.named_children():
            if child is old:
                setattr(parent, name, new)
                return


@torch.no_grad()
def shrink_feed_forwards(model: nn.Module, masks: list[torch.Tensor]) -> int:
    """Remove masked neurons for good: smaller Linear layers and a smaller `intermediate_size`."""
    ffns = find_feed_forwards(model)
    sizes = {int(m.sum()) for m in masks}
    if len(sizes) != 1:
        raise UsageError("FFN masks must keep the same number of neurons in every layer.")
    for ffn, keep in zip(ffns, masks):
        index = torch.nonzero(keep).flatten()
        for up in ffn.up:
            _replace(model, up, _sliced(up, rows=index))
        _replace(model, ffn.down, _sliced(ffn.down, cols=index))
    key, _ = intermediate_size(model.config)
    new_size = sizes.pop()
    setattr(model.config, key, new_size)
    return new_size
