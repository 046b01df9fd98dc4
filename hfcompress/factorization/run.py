"""`hfcompress factorize`: low-rank factorization of Linear layers from a truncated SVD, then optional recovery.

Loading, calibration batches, measuring, recovery by distillation from the unfactorized model and the output folder
are those of one-shot pruning (pruning/oneshot.py); this module chooses the layers and ranks and records them.
The saved folder holds the two factors of each layer (smaller on disk), config.json and factorization.json list
the ranks, and `hfcompress.load_model` loads it (see loading.py).
"""

from __future__ import annotations

import time

from ..architecture import count_parameters
from ..errors import UsageError
from ..pruning.oneshot import calibration_settings, finish_calibrated, prepare_calibration, recover_and_save
from .factorization_config import FactorizationConfig
from .factorize import factorize_model, summarize
from .layers import shapes_of, target_modules
from .loading import mark_factorized, write_listing
from .svd import largest_useful_rank, minimum_parameters, saves_parameters

# The figures shown in the card's lineage table; the rest of the summary and the calibration figures go in `details`.
HEADLINE = ("layers_factorized", "weights_before", "weights_after", "energy_kept_mean", "output_error_mean",
            "plain_svd_output_error_mean")  # fmt: skip


def check_targets(modules: dict, config: FactorizationConfig) -> None:
    """Refuse, from the layers' shapes alone, settings that would factorize nothing."""
    shapes = shapes_of(modules)
    if config.rank is not None and not any(saves_parameters(i, o, config.rank) for i, o in shapes.values()):
        best = max(largest_useful_rank(i, o) for i, o in shapes.values())
        raise UsageError(
            f"--rank {config.rank} saves parameters in none of the {len(shapes)} targeted layers (at most rank {best} "
            "does: rank x (in + out) must be below in x out)."
        )
    if config.parameter_ratio is not None:
        total = sum(i * o for i, o in shapes.values())
        needed = minimum_parameters(shapes)
        if int(config.parameter_ratio * total) < needed:
            raise UsageError(
                f"--parameter-ratio {config.parameter_ratio} leaves {int(config.parameter_ratio * total):,} of "
                f"{total:,} weights, fewer than rank 1 in every targeted layer needs ({needed:,}); raise it."
            )
        if not any(largest_useful_rank(i, o) for i, o in shapes.values()):
            raise UsageError("No targeted layer is large enough for any rank to save parameters.")


def run_factorize(model_args, data_args, factorization: FactorizationConfig, teacher_args, args, command: str = ""):
    """Factorize `model_args.model`'s Linear layers, optionally recover by distillation, save, measure, report."""
    modules: dict = {}

    def check(model):
        modules.update(target_modules(model, factorization.modules, factorization.factorize_embeddings))
        check_targets(modules, factorization)

    p = prepare_calibration(model_args, data_args, teacher_args, args, factorization.calibration_samples, check,
                            what="factorization")  # fmt: skip
    model = p.model
    parameters_before = count_parameters(model)
    started = time.perf_counter()
    layers, blocks = factorize_model(model, p.batches, modules, factorization)
    ranks = {name: entry["rank"] for name, entry in layers.items() if entry.get("rank")}
    if not ranks:
        raise UsageError(
            f"--energy {factorization.energy} needs ranks that save parameters in none of the {len(layers)} targeted "
            "layers; lower it."
        )
    mark_factorized(model, ranks, factorization.method)
    seconds = time.perf_counter() - started
    model, before_recovery = recover_and_save(p, model, model_args, args, factorization.recovery_steps)
    write_listing(model, p.output_dir)

    details = calibration_settings(p, seconds)
    details["factorization_seconds"] = details.pop("pruning_seconds")
    summary = summarize(layers)
    details.update({key: value for key, value in summary.items() if key not in HEADLINE})
    settings = {
        "method": "whitened SVD (SVD-LLM)" if factorization.whiten else "SVD",
        **{key: getattr(factorization, key) for key in ("rank", "energy", "parameter_ratio")
           if getattr(factorization, key) is not None},
        "modules": factorization.modules or "Linear layers inside the transformer blocks",
        "factorize_embeddings": factorization.factorize_embeddings,
        "seed": args.seed,
        **{key: summary[key] for key in HEADLINE if key in summary},
        "parameters_before": parameters_before,
        "parameters_after": count_parameters(model),
        "details": details,
        "ranks": ranks,
        "layers": layers,
        "blocks": blocks,
    }  # fmt: skip
    if factorization.whiten:
        settings["dampening"] = factorization.dampening
    if factorization.recovery_steps:
        settings.update(recovery_steps=factorization.recovery_steps, teacher=p.teacher_name or p.model_name,
                        learning_rate=args.learning_rate, metrics_before_recovery=before_recovery)  # fmt: skip
    title = "Low-rank factorization" + (" with recovery" if factorization.recovery_steps else "")
    return finish_calibrated(p, model, model_args, args, command, "low-rank factorization", settings, title,
                             label="factorized")  # fmt: skip
