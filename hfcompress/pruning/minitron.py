"""`hfcompress prune --structure width|depth`: Minitron-style structured pruning, then distillation to recover.

Importance comes from activations on calibration data (importance.py), the weights are sliced to the targets
and the config rewritten (surgery.py), so the result is an ordinary, smaller checkpoint that loads with
`from_pretrained` and runs faster on any runtime. `--recovery-steps N` distils it from the unpruned model.
"""

from __future__ import annotations

import logging
import time

from ..architecture import count_parameters, find_layer_list, hidden_size, num_layers
from ..errors import UsageError
from .budget import depth_for_budget, width_for_budget
from .ffn import find_feed_forwards, neuron_scores
from .importance import choose_heads, collect_importance, top_indices
from .neuron_importance import taylor_scores
from .oneshot import calibration_settings, finish_calibrated, prepare_calibration, recover_and_save
from .surgery import (
    check_rebuildable,
    check_width_family,
    drop_blocks,
    resized_config,
    slice_heads,
    slice_hidden,
    slice_neurons,
)

logger = logging.getLogger("hfcompress")


def width_targets(config, pruning) -> dict:
    """The kept sizes asked for width pruning, each checked against the model (smaller; not yet whether the config
    can hold them together: see check_config_accepts)."""
    check_width_family(config)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    targets = {}
    if pruning.ffn_size is not None:
        if pruning.ffn_size >= config.intermediate_size:
            raise UsageError(f"--ffn-size {pruning.ffn_size} is not below the model's {config.intermediate_size}.")
        targets["ffn_size"] = pruning.ffn_size
    if pruning.hidden_size is not None:
        if pruning.hidden_size >= config.hidden_size:
            raise UsageError(f"--hidden-size {pruning.hidden_size} is not below the model's {config.hidden_size}.")
        targets["hidden_size"] = pruning.hidden_size
    if pruning.num_heads is not None or pruning.num_kv_heads is not None:
        keep_kv = pruning.num_kv_heads if pruning.num_kv_heads is not None else kv_heads
        if keep_kv > kv_heads:
            raise UsageError(f"--num-kv-heads {keep_kv} is more than the model's {kv_heads} key/value heads.")
        keep_heads = pruning.num_heads if pruning.num_heads is not None else keep_kv * (heads // kv_heads)
        if keep_heads > heads:
            raise UsageError(f"--num-heads {keep_heads} is more than the model's {heads} attention heads.")
        if keep_heads % keep_kv or keep_heads // keep_kv > heads // kv_heads:
            raise UsageError(
                f"--num-heads {keep_heads} must be a multiple of the {keep_kv} key/value heads kept, with at most "
                f"{heads // kv_heads} query heads per key/value head (pass --num-kv-heads to drop whole groups)."
            )
        if (keep_heads, keep_kv) == (heads, kv_heads):
            raise UsageError(
                f"--num-heads {keep_heads} and --num-kv-heads {keep_kv} keep every head: nothing to prune."
            )
        targets.update(num_heads=keep_heads, num_kv_heads=keep_kv)
    return targets


def check_config_accepts(config, targets: dict) -> None:
    """Refuse targets the family's config would reject when saved (transformers 5 validates configs then)."""
    try:
        resized_config(config, targets).validate()
    except Exception as err:  # transformers raises its own validation error types
        cause = getattr(err, "__cause__", None) or err
        reason = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
        raise UsageError(f"A '{config.model_type}' config cannot hold these sizes: {reason}") from err


def depth_target(config, pruning) -> int:
    layers = num_layers(config)
    if pruning.num_layers >= layers:
        raise UsageError(f"--num-layers {pruning.num_layers} is not below the model's {layers} blocks.")
    return pruning.num_layers


def apply_width(model, importance, targets: dict) -> None:
    config = model.config
    if "num_heads" in targets:
        kept = [choose_heads(scores, config.num_key_value_heads, targets["num_kv_heads"], targets["num_heads"])
                for scores in importance.heads]  # fmt: skip
        slice_heads(model, kept)
    if "ffn_size" in targets:
        slice_neurons(model, [top_indices(scores, targets["ffn_size"]) for scores in importance.neurons])
    if "hidden_size" in targets:
        slice_hidden(model, top_indices(importance.channels, targets["hidden_size"]))


def run_structured(model_args, data_args, pruning, teacher_args, args, command: str = "") -> dict:
    targets: dict = {}
    budget: dict = {}  # --parameter-budget: as asked, in parameters, and the pruned model's count

    def check(model):
        if pruning.parameter_budget is not None:
            budget["parameter_budget"] = str(pruning.parameter_budget)
        if pruning.structure == "width":
            targets.update(width_targets(model.config, pruning))
            if pruning.parameter_budget is not None:  # the budget solves for the FFN / hidden sizes not given
                if "hidden_size" in targets:  # first the given sizes (the budget chooses a hidden size that fits)
                    check_config_accepts(model.config, targets)
                chosen, budget["budget_parameters"] = width_for_budget(model, targets, pruning.parameter_budget)
                targets.update(chosen)
            check_config_accepts(model.config, targets)
            if pruning.importance == "taylor" and not type(model).__name__.endswith("ForCausalLM"):
                raise UsageError(
                    f"--importance taylor needs a causal LM's loss on the calibration text, not a "
                    f"{type(model).__name__}; use --importance activation or magnitude."
                )
        elif pruning.parameter_budget is not None:
            targets["num_layers"], budget["budget_parameters"] = depth_for_budget(model, pruning.parameter_budget)
        else:
            targets["num_layers"] = depth_target(model.config, pruning)
            find_layer_list(model)

    p = prepare_calibration(model_args, data_args, teacher_args, args, pruning.calibration_samples, check)
    model = p.model
    before = {"parameters": count_parameters(model), "hidden_size": hidden_size(model.config),
              "num_layers": num_layers(model.config)}  # fmt: skip
    started = time.perf_counter()
    importance = collect_importance(model, p.batches, width=pruning.structure == "width")
    if "ffn_size" in targets and pruning.importance == "magnitude":
        importance.neurons = [neuron_scores(ffn) for ffn in find_feed_forwards(model)]
    elif "ffn_size" in targets and pruning.importance == "taylor":
        importance.neurons = taylor_scores(model, p.batches)  # heads and hidden channels stay activation-based
    if pruning.structure == "width":
        apply_width(model, importance, targets)
        removed = None
    else:
        keep = sorted(top_indices(importance.blocks, targets["num_layers"]).tolist())
        removed = sorted(set(range(before["num_layers"])) - set(keep))
        drop_blocks(model, keep)
    check_rebuildable(model)
    after = count_parameters(model)
    if budget:
        budget["parameters_after_pruning"] = after
    logger.info(  # the shape chosen, before a recovery run that may take long
        "Pruned (%s) to %s: %s -> %s parameters%s",
        pruning.structure,
        describe_targets(targets, removed),
        f"{before['parameters']:,}",
        f"{after:,}",
        f" (budget {budget['budget_parameters']:,})" if budget.get("budget_parameters") else "",
    )
    seconds = time.perf_counter() - started
    model, before_recovery = recover_and_save(p, model, model_args, args, pruning.recovery_steps)

    # width: how FFN neurons were scored (heads and hidden channels: always activation, Minitron)
    kind = pruning.importance if pruning.structure == "width" else "activation (Minitron)"
    settings = {"structure": pruning.structure, "targets": targets, "importance": kind,
                **budget, "seed": args.seed, **calibration_settings(p, seconds), "before": before,
                "block_importance": [round(x, 6) for x in importance.blocks.tolist()]}  # fmt: skip
    if removed is not None:
        settings["removed_blocks"] = removed
    if pruning.recovery_steps:
        settings.update(recovery_steps=pruning.recovery_steps, teacher=p.teacher_name or p.model_name,
                        learning_rate=args.learning_rate, metrics_before_recovery=before_recovery)  # fmt: skip
    title = f"Structured pruning ({pruning.structure}" + (", with recovery)" if pruning.recovery_steps else ")")
    return finish_calibrated(p, model, model_args, args, command, f"{pruning.structure}-pruning", settings, title)


def describe_targets(targets: dict, removed: list | None) -> str:
    shown = ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in targets.items())
    return shown + (f" (blocks {removed} removed)" if removed else "")
