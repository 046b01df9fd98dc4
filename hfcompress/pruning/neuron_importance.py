"""Data-driven importance of FFN neurons, gathered by hooks while the model runs on real data.

A neuron's activation is its value at the input of the block's down projection (shape (..., width)). Two scores:
activation, the mean |a| over tokens; taylor, the first-order estimate of the loss change when the neuron is
removed (Molchanov et al., 2017): per batch |sum over tokens of a * dL/da|, averaged over batches. A pruned
neuron (weights and bias zeroed) has zero activation, so it scores zero and stays pruned.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from ..architecture import in_out
from .ffn import FeedForward, find_feed_forwards


class NeuronStats:
    """Per-neuron activation statistics of every FFN, from the forward (and, for taylor, backward) passes.

    Only real tokens count when the model is called with a 2-D `attention_mask` keyword whose shape matches the
    activations' leading dimensions (padding excluded); otherwise every position counts. With `training_only`,
    passes with the FFN in eval mode (evaluation while training) are ignored. Under torch.distributed the sums
    are all-reduced in `scores()`, so every process picks the same neurons; call it on every process alike.
    """

    def __init__(self, model: nn.Module, ffns: list[FeedForward], taylor: bool = False, training_only: bool = True):
        self.taylor, self.training_only = taylor, training_only
        self.handles: list = []
        self._token_mask: torch.Tensor | None = None
        device = ffns[0].down.weight.device
        width = in_out(ffns[0].down)[0]
        self.abs_sums = torch.zeros(len(ffns), width, device=device)  # sum over tokens of |a|
        self.taylor_sums = torch.zeros(len(ffns), width, device=device)  # sum over batches of |sum_tokens a * g|
        self.counts = torch.zeros(2, len(ffns), dtype=torch.int64, device=device)  # tokens, batches with a gradient
        self.attach(model, ffns)

    def attach(self, model: nn.Module, ffns: list[FeedForward]) -> None:
        """Hook `model` (for its attention mask) and each FFN's down projection; drops any earlier hooks."""
        self.detach()
        self.handles.append(model.register_forward_pre_hook(self._remember_mask, with_kwargs=True))
        for index, ffn in enumerate(ffns):
            self.handles.append(ffn.down.register_forward_pre_hook(partial(self._record, index)))

    def detach(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    @property
    def attached(self) -> bool:
        return bool(self.handles)

    def reset(self) -> None:
        self.abs_sums.zero_()
        self.taylor_sums.zero_()
        self.counts.zero_()

    def _remember_mask(self, module, args, kwargs) -> None:
        mask = kwargs.get("attention_mask")
        self._token_mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None

    def _real_tokens(self, a: torch.Tensor) -> torch.Tensor | None:
        mask = self._token_mask
        if mask is None or tuple(mask.shape) != tuple(a.shape[:-1]):
            return None
        return mask.reshape(-1).to(device=a.device).bool()

    def _record(self, index: int, module: nn.Module, args) -> None:
        if self.training_only and not module.training:
            return
        a = args[0]
        keep = self._real_tokens(a)
        flat = a.detach().reshape(-1, a.shape[-1])
        flat = flat[keep] if keep is not None else flat
        with torch.no_grad():
            self.abs_sums[index] += flat.float().abs().sum(dim=0).to(self.abs_sums.device)
            self.counts[0, index] += flat.shape[0]
        if self.taylor and a.requires_grad:
            # Holds the activation until the backward pass reaches it (autograd usually keeps it anyway).
            a.register_hook(partial(self._record_grad, index, a.detach(), keep))

    def _record_grad(self, index: int, a: torch.Tensor, keep: torch.Tensor | None, grad: torch.Tensor) -> None:
        with torch.no_grad():
            product = (a.float() * grad.float()).reshape(-1, a.shape[-1])
            product = product[keep] if keep is not None else product
            self.taylor_sums[index] += product.sum(dim=0).abs().to(self.taylor_sums.device)
            self.counts[1, index] += 1

    @torch.no_grad()
    def scores(self) -> list[torch.Tensor] | None:
        """Per layer, one score per neuron (higher: more important); None while nothing has been recorded."""
        sums = (self.taylor_sums if self.taylor else self.abs_sums).clone()
        counts = self.counts.clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums)
            torch.distributed.all_reduce(counts)
        counts = counts[1 if self.taylor else 0]
        if not bool((counts > 0).all()):
            return None
        return list(sums / counts[:, None].to(sums.dtype))


def taylor_scores(model: nn.Module, batches: list[dict]) -> list[torch.Tensor]:
    """Taylor importance of every FFN neuron of a causal LM, from its loss on `batches` (one-shot pruning).

    Labels are the batch's `labels`, else its input ids (padding ignored). Parameters get no gradients (their
    `requires_grad` is off meanwhile); only activations do, from the embeddings' output on. Memory: one batch's
    activations through the whole model, as a training step without the weights' gradients and optimizer state.
    """
    ffns = find_feed_forwards(model)
    stats = NeuronStats(model, ffns, taylor=True, training_only=False)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    handle = model.get_input_embeddings().register_forward_hook(lambda m, a, out: out.requires_grad_(True))
    device = next(model.parameters()).device
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        with torch.enable_grad():
            for batch in batches:
                batch = {k: v.to(device) for k, v in batch.items()}
                if "labels" not in batch:
                    labels = batch["input_ids"].clone()
                    if "attention_mask" in batch:
                        labels[batch["attention_mask"] == 0] = -100
                    batch["labels"] = labels
                model(**batch, use_cache=False).loss.backward()
    finally:
        handle.remove()
        stats.detach()
        for p, flag in flags:
            p.requires_grad_(flag)
    scores = stats.scores()
    if scores is None:
        raise RuntimeError("The calibration batches gave the FFN activations no gradients.")
    return scores
