"""Slicing a decoder-only model to a smaller width or depth, with a config transformers 5 builds in the new shape.

Width: FFN neurons, query heads and key/value groups (GQA), and hidden (embedding) channels of the Llama
layout (Llama, Mistral, Qwen2, Qwen3): `self_attn.{q,k,v,o}_proj`, `mlp.{gate,up,down}_proj`, RMSNorms,
`embed_tokens` and `lm_head`. Depth: whole blocks of any family with a list of blocks.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..architecture import find_layer_list
from ..errors import UsageError
from .ffn import _replace, _sliced

WIDTH_FAMILIES = ("llama", "mistral", "qwen2", "qwen3")


def check_width_family(config) -> None:
    if config.model_type not in WIDTH_FAMILIES:
        raise UsageError(
            f"Width pruning supports the Llama layout ({', '.join(WIDTH_FAMILIES)}); a '{config.model_type}' "
            "model cannot be sliced that way (--structure depth removes whole blocks of any family)."
        )


TARGET_KEYS = {"ffn_size": "intermediate_size", "hidden_size": "hidden_size", "num_heads": "num_attention_heads",
               "num_kv_heads": "num_key_value_heads"}  # fmt: skip


def head_dim_of(config) -> int:
    # Qwen2's config has no head_dim attribute unless config.json names one (transformers 5 then raises on reading it)
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def resized_config(config, targets: dict):
    """A copy of `config` with the width `targets` (ffn_size, hidden_size, num_heads, num_kv_heads) applied, and an
    explicit head_dim (slicing keeps it, while hidden_size / num_heads may no longer give it)."""
    new = copy.deepcopy(config)
    new.head_dim = head_dim_of(config)
    for target, key in TARGET_KEYS.items():
        if target in targets:
            setattr(new, key, targets[target])
    return new


def _head_rows(heads: torch.Tensor, head_dim: int) -> torch.Tensor:
    return (heads[:, None] * head_dim + torch.arange(head_dim)[None, :]).flatten()


def _sliced_norm(norm: nn.Module, index: torch.Tensor) -> None:
    norm.weight = nn.Parameter(norm.weight.detach()[index].clone())
    if getattr(norm, "bias", None) is not None:
        norm.bias = nn.Parameter(norm.bias.detach()[index].clone())


@torch.no_grad()
def slice_heads(model: nn.Module, kept: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Keep, per layer, the given (key/value groups, query heads); every layer keeps the same counts."""
    config = model.config
    head_dim = head_dim_of(config)
    _, _, layers = find_layer_list(model)
    for block, (groups, queries) in zip(layers, kept):
        att = block.self_attn
        q_rows, kv_rows = _head_rows(queries, head_dim), _head_rows(groups, head_dim)
        _replace(att, att.q_proj, _sliced(att.q_proj, rows=q_rows))
        _replace(att, att.k_proj, _sliced(att.k_proj, rows=kv_rows))
        _replace(att, att.v_proj, _sliced(att.v_proj, rows=kv_rows))
        _replace(att, att.o_proj, _sliced(att.o_proj, cols=q_rows))
        if hasattr(att, "num_key_value_groups"):
            att.num_key_value_groups = len(queries) // len(groups)
    config.head_dim = head_dim
    config.num_attention_heads = len(kept[0][1])
    config.num_key_value_heads = len(kept[0][0])


@torch.no_grad()
def slice_neurons(model: nn.Module, kept: list[torch.Tensor]) -> None:
    _, _, layers = find_layer_list(model)
    for block, index in zip(layers, kept):
        mlp = block.mlp
        _replace(mlp, mlp.gate_proj, _sliced(mlp.gate_proj, rows=index))
        _replace(mlp, mlp.up_proj, _sliced(mlp.up_proj, rows=index))
        _replace(mlp, mlp.down_proj, _sliced(mlp.down_proj, cols=index))
    model.config.intermediate_size = len(kept[0])


@torch.no_grad()
def slice_hidden(model: nn.Module, index: torch.Tensor) -> None:
    """Keep the hidden (residual stream) channels in `index` everywhere they appear."""
    config = model.config
    config.head_dim = head_dim_of(config)  # no longer derivable from hidden_size / heads
    base = model.get_decoder()
    tied = model.lm_head.weight is base.embed_tokens.weight
    base.embed_tokens.weight = nn.Parameter(base.embed_tokens.weight.detach()[:, index].clone())
    base.embed_tokens.embedding_dim = len(index)
    for block in base.layers:
        att, mlp = block.self_attn, block.mlp
        for linear in (att.q_proj, att.k_proj, att.v_proj):
            _replace(att, linear, _sliced(linear, cols=index))
        _replace(att, att.o_proj, _sliced(att.o_proj, rows=index))
        for linear in (mlp.gate_proj, mlp.up_proj):
            _replace(mlp, linear, _sliced(linear, cols=index))
        _replace(mlp, mlp.down_proj, _sliced(mlp.down_proj, rows=index))
        _sliced_norm(block.input_layernorm, index)
        _sliced_norm(block.post_attention_layernorm, index)
    _sliced_norm(base.norm, index)
    if tied:
        model.lm_head.weight = base.embed_tokens.weight
    else:
        _replace(model, model.lm_head, _sliced(model.lm_head, cols=index))
    config.hidden_size = len(index)


@torch.no_grad()
def drop_blocks(model: nn.Module, keep: list[int]) -> None:
    """Keep the blocks numbered in `keep` (in order), renumbering their cache index and the config."""
    config = model.config
    parent, attr, layers = find_layer_list(model)
    kept = nn.ModuleList([layers[i] for i in keep])
    for new_index, block in enumerate(kept):
        for module in block.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = new_index
    setattr(parent, attr, kept)
    for key in ("num_hidden_layers", "n_layer", "n_layers", "num_layers"):
        if isinstance(getattr(config, key, None), int):
            setattr(config, key, len(keep))
            break
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [config.layer_types[i] for i in keep]


def check_rebuildable(model: nn.Module) -> None:
    """Refuse a sliced model whose config would not build the same shapes, or that transformers would refuse
    to save (nothing is saved then)."""
    if hasattr(model.config, "validate"):
        try:
            model.config.validate()
        except Exception as err:  # transformers raises its own validation error types
            raise UsageError(f"The pruned model's config is not valid: {err}") from err
    with torch.device("meta"):
        reference = type(model)(copy.deepcopy(model.config))
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if expected != actual:
        wrong = sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))
        raise UsageError(
            f"The pruned '{model.config.model_type}' model's config cannot express its new shapes "
            f"({len(wrong)} tensors differ, first {wrong[0]}); this family cannot be pruned this way."
        )
