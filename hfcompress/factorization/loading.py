"""Saving and loading factorized models: `load_model(path)` rebuilds the low-rank layers `from_pretrained` cannot.

transformers (5.24) builds every model from its config alone and has no config field for "this Linear is two
Linears": plain `from_pretrained` on a factorized folder reports the factors as UNEXPECTED and the dense weights as
MISSING, and leaves those layers randomly initialized. So config.json records the ranks (`hfcompress_factorized`),
as does factorization.json for readers, and `load_model` loads the ordinary transformers class with each listed
layer swapped for a FactorizedLinear before the weights load: transformers' own loader then fills the factors from
the safetensors (dtype, tied weights, buffers as usual), and any missing or unexpected key is an error.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from ..errors import HfcompressError, UsageError
from .layers import swap_in

CONFIG_KEY = "hfcompress_factorized"
LISTING = "factorization.json"
LOAD_HINT = "from hfcompress import load_model; model = load_model(path)"


def factorized_ranks(config) -> dict[str, int]:
    """{module name: rank} recorded in a config (a PretrainedConfig or config.json's dict), else {}."""
    entry = config.get(CONFIG_KEY) if isinstance(config, dict) else getattr(config, CONFIG_KEY, None)
    return dict((entry or {}).get("ranks") or {})


def is_factorized(folder) -> bool:
    """True for a model folder that `hfcompress factorize` wrote (or one saved from such a model)."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return False
    try:
        return bool(factorized_ranks(json.loads(path.read_text(encoding="utf-8"))))
    except ValueError:
        return False


def mark_factorized(model, ranks: dict[str, int], method: str) -> None:
    """Record the ranks in the model's config (saved with it), merged with those of an earlier factorization."""
    merged = {**factorized_ranks(model.config), **ranks}
    setattr(model.config, CONFIG_KEY, {"format": 1, "method": method, "ranks": merged, "load_with": LOAD_HINT})


def write_listing(model, folder) -> Path:
    path = Path(folder) / LISTING
    path.write_text(json.dumps(getattr(model.config, CONFIG_KEY), indent=2) + "\n", encoding="utf-8")
    return path


@functools.cache
def factorized_class(base):
    """`base` (e.g. LlamaForCausalLM) whose __init__ swaps in the config's factorized layers, same name."""

    def __init__(self, config, *args, **kwargs):
        base.__init__(self, config, *args, **kwargs)
        swap_in(self, factorized_ranks(config))

    return type(base.__name__, (base,), {"__init__": __init__, "__module__": base.__module__,
                                         "__qualname__": base.__qualname__})  # fmt: skip


def load_model(path, task=None, **kwargs):
    """Load a model folder (or Hub id) written by `hfcompress factorize`, as its ordinary transformers class.

    `task` (a hfcompress Task) picks the model class; by default the one config.json names (a causal LM or a
    sequence classifier). `kwargs` go to `from_pretrained` (dtype, revision, attn_implementation ...). Remote code
    never runs. A folder without factorized layers loads with plain `from_pretrained`.
    """
    from transformers.models.auto.auto_factory import _get_model_class

    from ..models import auto_class_for, check_model_available, load_config

    resolved = check_model_available(path)
    config = load_config(resolved, revision=kwargs.get("revision"))
    auto = task.auto_class() if task is not None else auto_class_for(config)
    ranks = factorized_ranks(config)
    if not ranks:
        return auto.from_pretrained(resolved, **kwargs).eval()
    try:
        base = _get_model_class(config, auto._model_mapping)
    except (KeyError, ValueError):
        raise UsageError(
            f"'{resolved}' is a '{config.model_type}' model, which {auto.__name__} cannot build."
        ) from None
    try:
        model, info = factorized_class(base).from_pretrained(resolved, config=config, output_loading_info=True,
                                                             **kwargs)  # fmt: skip
    except (OSError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise HfcompressError(f"Could not load the factorized model '{resolved}': {first}") from err
    wrong = [f"{kind.split('_')[0]} {key}" for kind in ("missing_keys", "unexpected_keys", "mismatched_keys")
             for key in sorted(info.get(kind) or [], key=str)]  # fmt: skip
    if wrong:
        raise HfcompressError(
            f"The weights of '{resolved}' do not match its factorized layers ({len(wrong)} keys, first: {wrong[0]})."
        )
    return model.eval()


def load_for_task(resolved: str, task, config, kwargs: dict):
    """`models.load_for_task` for a factorized folder: (model, head_was_initialised), loaded as saved."""
    from ..models import head_matches, other_task_labels
    from ..tasks import TaskType

    if task.kind == TaskType.CAUSAL_LM:
        return load_model(resolved, task, **kwargs), False
    num_labels = task.model_kwargs().get("num_labels")
    if num_labels and config.num_labels != num_labels:
        raise UsageError(f"'{resolved}' has a {config.num_labels}-label head, but {task.name} needs {num_labels}.")
    fresh = not head_matches(config, num_labels) or bool(other_task_labels(config, getattr(task, "label_names", None)))
    return load_model(resolved, task, **kwargs), fresh
