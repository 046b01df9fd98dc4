"""L1 sparsity regularization (`--l1-weight`): the training loss plus `l1_weight * sum |w|` over prunable weights.

The penalty pushes the weights that magnitude pruning cuts (`pruning.masks.prunable_modules`: the Linear / Conv1D
layers inside the transformer blocks, never embeddings, norms, biases or the classifier) towards zero, so fewer
weights that matter are left to cut. `l1_penalty` is the pure function; `L1Regularization` adds it to a Trainer's
training loss (never to the evaluation loss) and logs the unweighted sum as `l1_penalty`, averaged over the
logging window like the distillation loss parts.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from transformers import Trainer


def l1_penalty(weights: Iterable[torch.Tensor]) -> torch.Tensor:
    """sum |w| over every entry of `weights`, in float32, differentiable (d/dw = sign(w), 0 at w = 0).

    A sharded DTensor (FSDP2) sums its local shard and all-reduces the partial sums (`full_tensor`), so every
    process gets the whole model's penalty and each shard gets its own entries' gradient, sign(w), once.
    """
    sums = []
    for weight in weights:
        part = weight.abs().sum(dtype=torch.float32)
        if hasattr(part, "full_tensor"):  # a DTensor (FSDP2): a partial sum per process until reduced
            part = part.full_tensor()
        sums.append(part)
    if not sums:
        return torch.zeros((), dtype=torch.float32)
    device = sums[0].device
    return torch.stack([s.to(device) for s in sums]).sum()


def prunable_weights(model: nn.Module, pattern: str | None = None) -> list[torch.Tensor]:
    """The weight tensors magnitude pruning would cut (`prunable_modules`), read now: FSDP2 swaps a module's
    parameter between its shard and the gathered tensor, so read them again each time they are needed."""
    from .pruning.masks import prunable_modules

    return [module.weight for module in prunable_modules(model, pattern).values()]


class L1Regularization:
    """Trainer mixin: `add_l1_penalty` adds `args.l1_weight * l1_penalty(...)` to a training loss.

    The weights are those of `l1_modules` (name -> module; default: `prunable_modules` of the model, found when
    the trainer is built so a model without any fails before training). Logs get `l1_penalty`, the unweighted sum
    averaged over the training batches since the last log; `loss` includes the weighted term.
    """

    def __init__(self, *args, l1_modules: dict[str, nn.Module] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._l1_sum = 0.0
        self._l1_count = 0
        self.l1_modules = l1_modules
        if self.l1_weight > 0:
            from .errors import UsageError
            from .sharding import fsdp_version, zero3_enabled

            if zero3_enabled(self.accelerator) or fsdp_version(self.accelerator) == 1:
                raise UsageError(
                    "--l1-weight needs whole weights or FSDP2 shards on each process, but DeepSpeed ZeRO-3 and FSDP1 "
                    "hide them outside the forward pass; use FSDP (fsdp_config version 2) or ZeRO stage 1 or 2."
                )
            if self.l1_modules is None:
                from .pruning.masks import prunable_modules

                self.l1_modules = prunable_modules(self.accelerator.unwrap_model(self.model))

    @property
    def l1_weight(self) -> float:
        return getattr(self.args, "l1_weight", 0.0)  # plain TrainingArguments (Python API) have none

    def add_l1_penalty(self, loss: torch.Tensor, model: nn.Module, num_items_in_batch=None) -> torch.Tensor:
        """`loss + l1_weight * penalty` while training, scaled so each optimizer step adds the term once."""
        if not self.l1_weight or not model.training:
            return loss
        penalty = l1_penalty(module.weight for module in self.l1_modules.values())
        self._l1_sum += penalty.detach().item()
        self._l1_count += 1
        # The Trainer divides a per-batch loss by the accumulation steps, but not one already normalised over the
        # whole accumulated batch (num_items_in_batch): the penalty must then be divided here. Across processes,
        # every process adds the same penalty: DDP averages equal gradients, and an FSDP2 shard (a DTensor, see
        # l1_penalty) gets sign(w) straight into its own gradient, so neither needs the loss's world-size factor.
        scaled = self.loss_is_scaled_for_ga
        if scaled is None:  # how Trainer.training_step decides
            scaled = (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or (
                self.compute_loss_func is not None
            )
        if scaled:
            penalty = penalty / getattr(
                self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps
            )
        return loss + self.l1_weight * penalty.to(loss.device)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._l1_count:
            logs["l1_penalty"] = round(self._l1_sum / self._l1_count, 4)
            self._l1_sum, self._l1_count = 0.0, 0
        super().log(logs, start_time)


class L1Trainer(L1Regularization, Trainer):
    """`transformers.Trainer` whose training loss includes `--l1-weight`'s penalty (finetune, gradual prune)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if return_outputs:
            loss, outputs = result
            return self.add_l1_penalty(loss, model, num_items_in_batch), outputs
        return self.add_l1_penalty(result, model, num_items_in_batch)
