"""Reading a model's structure from its config and modules, not from hard-coded attribute paths."""

from __future__ import annotations

from torch import nn

from .errors import UsageError

# Names transformer stacks use for their list of blocks: BERT/RoBERTa/ELECTRA/DistilBERT "layer",
# Llama/Qwen "layers", GPT-2 "h", T5 "block".
_LAYER_LIST_NAMES = ("layer", "layers", "h", "block", "blocks")


def num_layers(config) -> int:
    for key in ("num_hidden_layers", "n_layer", "n_layers", "num_layers"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    raise UsageError(f"Cannot tell how many layers a '{config.model_type}' model has from its config.")


def find_layer_list(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """Return (parent, attribute, ModuleList) of the model's stack of transformer blocks.

    The stack is the ModuleList whose length equals the config's layer count; when several match
    (an encoder-decoder), the first one in module order is taken.
    """
    expected = num_layers(model.config)
    candidates = []
    for parent_name, parent in model.named_modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.ModuleList) and len(child) == expected:
                candidates.append((attr in _LAYER_LIST_NAMES, parent_name, parent, attr, child))
    if not candidates:
        raise UsageError(
            f"Could not find the {expected} transformer layers of this '{model.config.model_type}' model."
        )
    candidates.sort(key=lambda c: not c[0])  # stable: preferred names first, then module order
    _, _, parent, attr, layers = candidates[0]
    return parent, attr, layers


def hidden_size(config) -> int:
    for key in ("hidden_size", "dim", "d_model", "n_embd"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    raise UsageError(f"Cannot tell the hidden size of a '{config.model_type}' model from its config.")


def count_parameters(model: nn.Module) -> int:
    # Tied weights (input and output embeddings) are counted once.
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def is_projection(module: nn.Module) -> bool:
    """An nn.Linear, or GPT-2's Conv1D (a Linear that stores its weight as in x out)."""
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (nn.Linear, Conv1D))


def oriented_weight(module: nn.Module):
    """The weight as (out, in), a view of the module's own tensor: writes to it change the module."""
    from transformers.pytorch_utils import Conv1D

    return module.weight.t() if isinstance(module, Conv1D) else module.weight


def in_out(module: nn.Module) -> tuple[int, int]:
    out_features, in_features = oriented_weight(module).shape
    return in_features, out_features
