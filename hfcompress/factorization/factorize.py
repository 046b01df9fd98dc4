"""Factorize a model's layers in place, block by block on calibration data.

The blocks run in order on the calibration inputs (pruning/calibration.py, as one-shot pruning does): hooks
gather each targeted layer's X^T X, the block's layers are factorized (whitened by it with --whiten), and the
block runs again so its new outputs feed the next block. X^T X also gives each layer's relative output error on
the calibration data, for the chosen method and, when whitened, for plain SVD at the same rank. Layers outside the
blocks (chosen with --modules) get their X^T X from one pass of the whole model afterwards; word embeddings
(--factorize-embeddings) are factorized by plain SVD, their error measured on the weights. With
--parameter-ratio the ranks are allocated first, from every layer's spectrum (whitened: one calibration pass
that changes nothing), then applied.
"""

from __future__ import annotations

import torch
from torch import nn

from ..pruning.calibration import InputStatistics, prune_block_by_block
from .layers import factorized_from, oriented, set_module, shapes_of
from .svd import (
    allocate_ranks,
    decompose,
    factorized_parameters,
    kept_energy,
    rank_for_energy,
    relative_error,
    saves_parameters,
    spectrum,
    truncate,
    whitening,
)


@torch.no_grad()
def factorize_layer(model, name: str, module: nn.Module, gram, config, rank: int | None = None) -> dict:
    """Replace `module` by its truncated SVD when that saves parameters; returns what was done, for the report."""
    weight = oriented(module).detach()
    out_features, in_features = weight.shape
    white = whitening(gram, config.dampening) if config.whiten and gram is not None else None
    u, s, vh = decompose(weight, white)
    if rank is None:
        rank = config.rank if config.rank is not None else rank_for_energy(s, config.energy)
    rank = min(rank, len(s))
    entry = {"shape": [out_features, in_features], "rank": rank, "energy_kept": round(kept_energy(s, rank), 6)}
    if not saves_parameters(in_features, out_features, rank):
        needed = factorized_parameters(in_features, out_features, rank)
        entry.update(rank=None, kept_dense=f"rank {rank} stores {needed:,} weights, not fewer than "
                     f"{in_features * out_features:,}")  # fmt: skip
        return entry
    first, second = truncate(u, s, vh, rank, white)
    entry["output_error" if gram is not None else "weight_error"] = round(
        relative_error(weight, first, second, gram), 6
    )
    if white is not None:
        plain = truncate(*decompose(weight), rank)
        entry["plain_svd_output_error"] = round(relative_error(weight, *plain, gram), 6)
    entry["parameters"] = [in_features * out_features, factorized_parameters(in_features, out_features, rank)]
    set_module(model, name, factorized_from(module, first, second))
    return entry


def factorize_model(model, batches: list[dict], modules: dict[str, nn.Module], config, progress: bool = True):
    """Factorize `modules` of `model` in place; returns ({name: entry}, per-block output change)."""
    ranks = planned_ranks(model, batches, modules, config, progress) if config.parameter_ratio is not None else {}
    layers: dict[str, dict] = {}

    def factorize_block(index, own, stats):
        for name, module in own.items():
            layers[name] = factorize_layer(model, name, module, stats[name].hessian, config, ranks.get(name))

    blocks = prune_block_by_block(
        model, batches, modules, factorize_block, hessian=True, progress=progress, desc="Factorizing blocks"
    )
    rest = {name: module for name, module in modules.items() if name not in layers}
    stats = input_statistics(model, batches, _calibrated(rest)) if _calibrated(rest) else {}
    for name, module in rest.items():
        gram = stats[name].hessian if name in stats else None
        layers[name] = factorize_layer(model, name, module, gram, config, ranks.get(name))
    return {name: layers[name] for name in modules}, blocks


def planned_ranks(model, batches, modules, config, progress: bool) -> dict[str, int]:
    """--parameter-ratio: one budget over all targeted layers, allocated by energy per parameter."""
    shapes = shapes_of(modules)
    budget = int(config.parameter_ratio * sum(i * o for i, o in shapes.values()))
    if not config.whiten:
        spectra = {name: spectrum(oriented(m).detach()) for name, m in modules.items()}
        return allocate_ranks(spectra, shapes, budget)
    spectra = {}

    def measure_block(index, own, stats):
        for name, module in own.items():
            white = whitening(stats[name].hessian, config.dampening)
            spectra[name] = spectrum(oriented(module).detach(), white)

    prune_block_by_block(
        model, batches, modules, measure_block, hessian=True, progress=progress, desc="Measuring spectra"
    )
    rest = {name: module for name, module in modules.items() if name not in spectra}
    stats = input_statistics(model, batches, _calibrated(rest)) if _calibrated(rest) else {}
    for name, module in rest.items():
        white = whitening(stats[name].hessian, config.dampening) if name in stats else None
        spectra[name] = spectrum(oriented(module).detach(), white)
    return allocate_ranks({name: spectra[name] for name in modules}, shapes, budget)


def _calibrated(modules: dict[str, nn.Module]) -> dict[str, nn.Module]:
    """The modules whose inputs are activations (not token ids, as an Embedding's are)."""
    return {name: module for name, module in modules.items() if not isinstance(module, nn.Embedding)}


@torch.no_grad()
def input_statistics(model, batches: list[dict], modules: dict[str, nn.Module]) -> dict[str, InputStatistics]:
    """X^T X of the inputs of `modules` over one pass of the whole model (real tokens only where the input has a
    position per token; a pooled classifier input counts every row)."""
    stats = {name: InputStatistics(module, hessian=True) for name, module in modules.items()}
    current = {"mask": None}

    def hook(module, args, output, stat):
        mask = current["mask"]
        x = args[0]
        stat.token_mask = mask.bool() if mask is not None and tuple(x.shape[:-1]) == tuple(mask.shape) else None
        stat.add(x)

    handles = [m.register_forward_hook(lambda mod, a, o, s=stats[n]: hook(mod, a, o, s)) for n, m in modules.items()]
    extra = {"use_cache": False} if getattr(model.config, "use_cache", None) is not None else {}
    device = next(model.parameters()).device
    try:
        for batch in batches:
            batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            current["mask"] = batch.get("attention_mask")
            model(**batch, **extra)
    finally:
        for handle in handles:
            handle.remove()
    return stats


def summarize(layers: dict[str, dict]) -> dict:
    """Weights of the targeted layers before and after, energy kept and output error over the factorized ones."""
    done = {name: entry for name, entry in layers.items() if entry.get("rank")}
    before = sum(entry["shape"][0] * entry["shape"][1] for entry in layers.values())
    after = before - sum(entry["parameters"][0] - entry["parameters"][1] for entry in done.values())
    summary = {"layers_factorized": len(done), "layers_kept_dense": len(layers) - len(done),
               "weights_before": before, "weights_after": after,
               "weights_ratio": round(after / before, 4) if before else None}  # fmt: skip
    if done:
        energies = [entry["energy_kept"] for entry in done.values()]
        summary.update(energy_kept_mean=round(sum(energies) / len(energies), 6), energy_kept_min=min(energies))
        errors = [entry["output_error"] for entry in done.values() if "output_error" in entry]
        if errors:
            summary.update(output_error_mean=round(sum(errors) / len(errors), 6), output_error_max=max(errors))
        plain = [entry["plain_svd_output_error"] for entry in done.values() if "plain_svd_output_error" in entry]
        if plain:
            summary["plain_svd_output_error_mean"] = round(sum(plain) / len(plain), 6)
    return summary
