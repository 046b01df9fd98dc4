"""`--parameter-budget` of Minitron-style pruning: reading it, and the sizes (width) or blocks (depth) that fit it.

A budget is a fraction of the model's parameters (0.5) or a count (67M, 1.2B, 500K). Depth keeps the most blocks
that fit; width shrinks the FFN and hidden sizes it may choose by one common factor, the largest that fits.
Counts are exact: width builds each candidate's model on the meta device (tied embeddings count once), depth
subtracts whole blocks' own parameters. Everything here runs before calibration, so an unreachable budget fails
before any work.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from fractions import Fraction

from ..errors import UsageError

SUFFIXES = {"k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}
_NUMBER = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmbt]?)\s*", re.IGNORECASE)
_FORMS = "a fraction of the model's parameters (e.g. 0.5) or a count with a K, M, B or T suffix (e.g. 67M)"
FREE = {"ffn_size": "intermediate_size", "hidden_size": "hidden_size"}  # the width sizes a budget chooses
NAMES = {"ffn_size": "FFN size", "hidden_size": "hidden size"}


def parse_parameter_budget(value) -> tuple[float | None, int | None]:
    """(fraction, None) for a fraction of the model's parameters in (0, 1), or (None, count) for '67M'."""
    match = _NUMBER.fullmatch(str(value)) if isinstance(value, (str, int, float)) else None
    if isinstance(value, bool) or match is None:
        raise UsageError(f"--parameter-budget must be {_FORMS}, not '{value}'.")
    number, suffix = float(match[1]), match[2].lower()
    if suffix and round(number * SUFFIXES[suffix]) >= 1:
        return None, round(number * SUFFIXES[suffix])
    if not suffix and number >= 1:
        raise UsageError(f"--parameter-budget {value} is not a fraction below 1; give {_FORMS}.")
    if suffix or number <= 0:
        raise UsageError(f"--parameter-budget must be {_FORMS}, not '{value}'.")
    return number, None


def budget_parameters(value, parameters: int) -> int:
    """The budget `value` as a parameter count, for a model of `parameters` parameters."""
    fraction, count = parse_parameter_budget(value)
    return count if count is not None else int(fraction * parameters)


def _check_reachable(asked, budget: int, total: int, smallest: int, how: str) -> None:
    """Refuse a budget the model already meets, or one below `smallest`, what `how` (its method and sizes) gives."""
    if budget >= total:
        raise UsageError(
            f"--parameter-budget {asked} ({budget:,} parameters) is not below the model's {total:,}; {how} reaches "
            f"sizes from {smallest:,} parameters up."
        )
    if budget < smallest:
        raise UsageError(
            f"--parameter-budget {asked} ({budget:,} parameters) is below the smallest size {how} reaches, "
            f"{smallest:,} parameters."
        )


def depth_for_budget(model, asked) -> tuple[int, int]:
    """(blocks to keep, the budget in parameters): the most blocks that fit the budget.

    The blocks of one model have the same size in every family we know; were they not, the largest are counted,
    so whichever blocks importance keeps fit.
    """
    from ..architecture import count_parameters, find_layer_list

    _, _, layers = find_layer_list(model)
    total = count_parameters(model)
    budget = budget_parameters(asked, total)
    sizes = sorted((count_parameters(block) for block in layers), reverse=True)
    rest = total - sum(sizes)
    _check_reachable(asked, budget, total, rest + sizes[0], "depth pruning (keeping 1 block)")
    kept = 1
    while kept < len(sizes) and rest + sum(sizes[: kept + 1]) <= budget:
        kept += 1
    return kept, budget


def parameters_of(model, targets: dict) -> int:
    """The parameters `model` has once sliced to the width `targets`, from its config's model on the meta device."""
    import torch

    from ..architecture import count_parameters
    from .surgery import resized_config

    with torch.device("meta"):
        return count_parameters(type(model)(resized_config(model.config, targets)))


def _sizes(config, fixed: dict, target: str) -> list[int]:
    """The sizes `target` may take, ascending: multiples of 8 the config accepts, any size it accepts below the
    smallest of those, and the model's own size."""
    from .surgery import resized_config

    full = getattr(config, FREE[target])

    def accepts(size: int) -> bool:
        if target == "ffn_size":
            return True  # any intermediate size builds; hidden must divide among the heads kept
        heads = {k: v for k, v in fixed.items() if k in ("num_heads", "num_kv_heads")}
        try:
            resized_config(config, {**heads, target: size}).validate()
        except Exception:  # transformers raises its own validation error types
            return False
        return True

    sizes, eights = [], False
    for size in range(1, full):
        if (size % 8 == 0 or not eights) and accepts(size):
            sizes.append(size)
            eights = eights or size % 8 == 0
    return [*sizes, full] if accepts(full) else sizes


def width_for_budget(model, fixed: dict, asked) -> tuple[dict, int]:
    """(the chosen sizes, the budget in parameters) for the FFN and hidden sizes not in `fixed`.

    Both shrink by one common factor (each rounded down to a size it may take); the largest factor whose model
    fits the budget wins. A size left at the model's own is not returned.
    """
    from ..architecture import count_parameters

    config = model.config
    total = count_parameters(model)
    budget = budget_parameters(asked, total)
    free = [target for target in FREE if target not in fixed]
    full = {target: getattr(config, FREE[target]) for target in free}
    options = {target: _sizes(config, fixed, target) for target in free}

    def sizes_at(scale: Fraction) -> dict | None:
        chosen = {}
        for target in free:
            index = bisect_right(options[target], scale * full[target]) - 1
            if index < 0:
                return None
            chosen[target] = options[target][index]
        return chosen

    scales = sorted({Fraction(size, full[target]) for target in free for size in options[target]})
    candidates = [sizes for sizes in map(sizes_at, scales) if sizes is not None]  # ascending in every size
    if not candidates:
        raise UsageError(f"No hidden size below {config.hidden_size} suits the heads kept; --parameter-budget "
                         "cannot be met by width pruning.")  # fmt: skip
    counts: dict[int, int] = {}

    def count(index: int) -> int:
        if index not in counts:
            counts[index] = parameters_of(model, {**fixed, **candidates[index]})
        return counts[index]

    smallest = ", ".join(f"{NAMES[t]} {v}" for t, v in candidates[0].items())
    _check_reachable(asked, budget, total, count(0), f"width pruning (at {smallest})")
    low, high = 0, len(candidates) - 1  # the parameters grow with the factor: bisect for the last that fits
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if count(middle) <= budget else (low, middle - 1)
    chosen = {target: size for target, size in candidates[low].items() if size != full[target]}
    return chosen, budget
