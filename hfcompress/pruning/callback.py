"""Gradual magnitude pruning as a `TrainerCallback`: add it to any `transformers.Trainer`."""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

from ..architecture import oriented_weight
from ..errors import UsageError
from ..sharding import check_prunable_engine, full_weights, is_fsdp2_model, reshard
from ..training import resume_folder
from .ffn import apply_neuron_masks, check_ffn_target, find_feed_forwards, intermediate_size, neuron_masks
from .heads import apply_group_masks, check_head_pruning, find_attentions, group_masks
from .masks import check_two_four, prunable_modules, sparsity_of, two_four_masks, unstructured_masks
from .neuron_importance import NeuronStats
from .pruning_config import PruningConfig

logger = logging.getLogger("hfcompress")

MASKS_FILE = "pruning_masks.safetensors"
STATE_FILE = "pruning_state.json"


class GradualMagnitudePruningCallback(TrainerCallback):
    """Prunes the model on the schedule's steps and keeps pruned weights at exactly zero.

    Masks are recomputed from weight magnitudes at each update step (before that step's forward pass) and
    re-applied after every optimizer step, so momentum and weight decay cannot revive a pruned weight. FFN
    neurons can instead be scored by their activations on the training batches since the last update
    (`importance="activation"` or `"taylor"`, see neuron_importance.py), summed over processes.
    Every process computes the same masks from the same (synchronised) weights; under FSDP2 each process first
    gathers the full weights (`sharding.full_weights`), so masks never depend on how weights are sharded, and
    writes its part of the result back to its shard. DeepSpeed ZeRO-3 and FSDP1 are refused. Checkpoints get the masks
    (`pruning_masks.safetensors`) and the schedule state (`pruning_state.json`); resuming continues the
    schedule where it stopped.

    ```python
    trainer = Trainer(model, args, train_dataset=train,
                      callbacks=[GradualMagnitudePruningCallback(PruningConfig(sparsity=0.9))])
    ```
    """

    def __init__(self, config: PruningConfig | None = None, **kwargs):
        self.config = config or PruningConfig(**kwargs)
        self.model = None
        self.end_step: int | None = None
        self.modules: dict[str, torch.nn.Module] = {}  # unstructured / 2:4: the modules whose weight is pruned
        self.masks: dict[str, torch.Tensor] = {}  # unstructured / 2:4: module name -> keep-mask of its weight
        # ffn / heads: per block, a keep-mask over its units (FFN neurons, or key/value head groups)
        self.unit_masks: list[torch.Tensor] = []
        self.current_sparsity = 0.0
        self.history: list[tuple[int, float]] = []  # (step, sparsity) at each mask update
        self.neuron_stats: NeuronStats | None = None  # ffn with --importance activation or taylor
        self._warned_no_stats = False

    # -- setup -------------------------------------------------------------------------------------
    def setup(self, model, max_steps: int) -> None:
        """Check the config against this model and run; called by on_train_begin, usable before training."""
        check_prunable_engine(model)
        self.model = model
        self.sharded = is_fsdp2_model(model)
        self.end_step = self.config.resolve_end_step(max_steps)
        if self.config.structure == "ffn":
            self.ffns = find_feed_forwards(model)
            self.keep_units = check_ffn_target(model, self.config.sparsity, self.config.ffn_size)
            self.width = intermediate_size(model.config)[1]
            if self.neuron_stats is not None:  # setup again (run_prune, then on_train_begin): fresh hooks
                self.neuron_stats.detach()
            if self.config.importance in ("activation", "taylor"):
                self.neuron_stats = NeuronStats(model, self.ffns, taylor=self.config.importance == "taylor")
        elif self.config.structure == "heads":
            self.head_shape = check_head_pruning(model.config)
            self.attentions = find_attentions(model)
            self.width = self.head_shape[1]  # units are key/value heads, each with its query heads
            self.keep_units = self.width - round(self.config.sparsity * self.width)
            if self.keep_units < 1:
                raise UsageError(f"Sparsity {self.config.sparsity} would remove every attention head.")
        else:
            self.modules = prunable_modules(model, self.config.modules)
            if self.config.structure == "2:4":
                check_two_four(self._weights())

    def rebind(self, model) -> None:
        """Point at `model`, a gathered copy of the trained one with the same module names (after FSDP training)."""
        self.model = model
        self.sharded = is_fsdp2_model(model)
        if self.config.structure == "ffn":
            self.ffns = find_feed_forwards(model)
            if self.neuron_stats is not None and self.neuron_stats.attached:
                self.neuron_stats.attach(model, self.ffns)
        elif self.config.structure == "heads":
            self.attentions = find_attentions(model)
        else:
            self.modules = {name: model.get_submodule(name) for name in self.modules}

    def _touched_modules(self) -> list[torch.nn.Module]:
        """The modules whose weights the masks read or write."""
        if self.config.structure == "ffn":
            return [m for ffn in self.ffns for m in (*ffn.up, ffn.down)]
        if self.config.structure == "heads":
            return [m for a in self.attentions for m in (a.q, a.k, a.v, a.o)]
        return list(self.modules.values())

    def _whole(self):
        """Under FSDP2, a context in which the touched modules hold their full weights; else nothing."""
        if not getattr(self, "sharded", False):
            return nullcontext()
        return full_weights(self._touched_modules(), self.model)

    def _weights(self) -> dict[str, torch.Tensor]:
        # (out, in) views, so 2:4 groups run along the inputs for Linear and GPT-2's Conv1D alike.
        return {name: oriented_weight(module) for name, module in self.modules.items()}

    # -- masks -------------------------------------------------------------------------------------
    def target_sparsity(self, step: int) -> float:
        return self.config.sparsity_at(step, self.end_step)

    @torch.no_grad()
    def update_masks(self, step: int) -> None:
        with self._whole():
            self._update_masks(step)

    def _update_masks(self, step: int) -> None:
        sparsity = self.target_sparsity(step)
        if self.config.structure in ("ffn", "heads"):
            # The schedule's progress (s_t / s_f) scales the number of units removed at the end.
            final_removed = self.width - self.keep_units
            removed = round(final_removed * sparsity / self.config.sparsity) if self.config.sparsity else 0
            removed = min(removed, final_removed)
            if self.config.structure == "ffn":
                self.unit_masks = neuron_masks(self.ffns, removed, self._neuron_scores(removed))
            else:
                self.unit_masks = group_masks(self.attentions, removed, *self.head_shape)
            self.current_sparsity = removed / self.width
        else:
            build = two_four_masks if self.config.structure == "2:4" else unstructured_masks
            self.masks = build(self._weights(), sparsity, self.config.scope)
            self.current_sparsity = sparsity_of(self.masks)
        self.history.append((step, self.current_sparsity))
        self._apply_masks()

    def _neuron_scores(self, removed: int) -> list[torch.Tensor] | None:
        """Data-driven scores gathered since the last update (then cleared); None means magnitude."""
        if self.neuron_stats is None:
            return None
        scores = self.neuron_stats.scores()  # every process calls it: it all-reduces under torch.distributed
        self.neuron_stats.reset()
        if scores is None and removed > 0 and not self._warned_no_stats:
            self._warned_no_stats = True
            logger.warning(
                "No training batch has run since the last mask update, so FFN neurons are scored by weight "
                "magnitude this time instead of by %s.", self.config.importance,
            )  # fmt: skip
        return scores

    @torch.no_grad()
    def apply_masks(self) -> None:
        if not getattr(self, "sharded", False):
            self._apply_masks()
        elif self.config.structure in ("ffn", "heads"):
            with self._whole():
                self._apply_masks()
        else:  # one module's full weight at a time
            reshard(self.model)
            for name, keep in self.masks.items():
                with full_weights([self.modules[name]]):
                    self._mask_weight(name, keep)

    def _apply_masks(self) -> None:
        if self.config.structure == "ffn":
            if self.unit_masks:
                apply_neuron_masks(self.ffns, self.unit_masks)
            return
        if self.config.structure == "heads":
            if self.unit_masks:
                apply_group_masks(self.attentions, self.unit_masks, *self.head_shape)
            return
        for name, keep in self.masks.items():
            self._mask_weight(name, keep)

    def _mask_weight(self, name: str, keep: torch.Tensor) -> None:
        weight = oriented_weight(self.modules[name])
        weight.mul_(keep.to(device=weight.device, dtype=weight.dtype))

    # -- Trainer events ----------------------------------------------------------------------------
    def maybe_update(self, step: int) -> None:
        """Recompute masks when `step` optimizer steps are done and `step` is one of the schedule's steps."""
        done = self.history and self.history[-1][0] == step
        if step >= self.config.start_step and self.config.is_update_step(step, self.end_step) and not done:
            self.update_masks(step)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.setup(model, state.max_steps)
        if state.global_step > 0:
            self._restore(resume_folder(args, state), state.global_step)
        self.maybe_update(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        self.maybe_update(state.global_step)

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.apply_masks()

    def on_train_end(self, args, state, control, **kwargs):
        self.apply_masks()
        if self.neuron_stats is not None:  # no more mask updates: stop recording
            self.neuron_stats.detach()

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not state.is_world_process_zero or not folder.is_dir():
            return
        tensors = {f"mask.{name}": mask.contiguous().cpu() for name, mask in self.masks.items()}
        tensors.update({f"units.{i}": mask.cpu() for i, mask in enumerate(self.unit_masks)})
        if tensors:
            save_file(tensors, folder / MASKS_FILE)
        state_json = {"config": self.config.to_dict(), "end_step": self.end_step, "history": self.history}
        (folder / STATE_FILE).write_text(json.dumps(state_json, indent=2))

    @torch.no_grad()
    def _masks_from_zeros(self) -> None:
        """Without a masks file (a checkpoint from elsewhere), pruned weights are the exact zeros."""
        with self._whole():
            self._read_masks_from_zeros()

    def _read_masks_from_zeros(self) -> None:
        if self.config.structure in ("ffn", "heads"):
            if self.config.structure == "heads":
                masks = [a.k.weight.ne(0).reshape(self.width, -1).any(dim=1) for a in self.attentions]
            else:
                masks = [oriented_weight(ffn.up[0]).ne(0).any(dim=1) for ffn in self.ffns]
            pruned = self.width - int(masks[0].sum())
            self.unit_masks = masks if pruned else []
            self.current_sparsity = pruned / self.width
        else:
            self.masks = {name: oriented_weight(module).ne(0) for name, module in self.modules.items()}
            self.current_sparsity = sparsity_of(self.masks)

    def _restore(self, folder: Path, step: int) -> None:
        if (folder / STATE_FILE).is_file():
            saved = json.loads((folder / STATE_FILE).read_text())
            self.history = [tuple(entry) for entry in saved["history"]]
            self.end_step = saved["end_step"]
        if (folder / MASKS_FILE).is_file():
            tensors = load_file(folder / MASKS_FILE)
            self.masks = {
                k.removeprefix("mask."): v.to(oriented_weight(self.modules[k.removeprefix("mask.")]).device)
                for k, v in tensors.items()
                if k.startswith("mask.")
            }
            count = sum(k.startswith("units.") for k in tensors)
            self.unit_masks = [tensors[f"units.{i}"] for i in range(count)]
            self.current_sparsity = (
                sparsity_of(self.masks) if self.masks else 1 - self.unit_masks[0].float().mean().item()
            )
            self.apply_masks()
            logger.info("Restored pruning masks from %s (sparsity %.3f).", folder, self.current_sparsity)
        else:
            self._masks_from_zeros()
