"""The factorized layers, which layers to factorize, and swapping them in for a Linear (or GPT-2 Conv1D) or the
word embeddings."""

from __future__ import annotations

import re

import torch
from torch import nn

from ..architecture import find_layer_list, is_projection, oriented_weight
from ..errors import UsageError


class FactorizedLinear(nn.Sequential):
    """A Linear layer stored as two: in -> rank without bias, then rank -> out with the original bias.

    Its state dict holds `0.weight` (rank x in), `1.weight` (out x rank) and `1.bias`.
    """

    def __init__(self, in_features: int, rank: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__(
            nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype),
            nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype),
        )

    @property
    def rank(self) -> int:
        return self[0].out_features

    @property
    def in_features(self) -> int:
        return self[0].in_features

    @property
    def out_features(self) -> int:
        return self[1].out_features

    @property
    def weight(self) -> torch.Tensor:
        """The dense (out x in) weight this layer equals, computed: for code that reads a Linear's weight (its
        dtype, device, or transformers' weight init, which touches GPT-2's c_proj.weight); writes to it are lost."""
        return self[1].weight @ self[0].weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self[1].bias


class FactorizedEmbedding(nn.Sequential):
    """Word embeddings stored as in ALBERT: a vocabulary x rank table, then rank -> hidden without bias.

    Its state dict holds `0.weight` (vocab x rank) and `1.weight` (hidden x rank).
    """

    def __init__(self, num_embeddings: int, rank: int, embedding_dim: int, device=None, dtype=None):
        super().__init__(
            nn.Embedding(num_embeddings, rank, device=device, dtype=dtype),
            nn.Linear(rank, embedding_dim, bias=False, device=device, dtype=dtype),
        )

    @property
    def rank(self) -> int:
        return self[0].embedding_dim

    @property
    def num_embeddings(self) -> int:
        return self[0].num_embeddings

    @property
    def embedding_dim(self) -> int:
        return self[1].out_features

    @property
    def weight(self) -> torch.Tensor:
        """The dense (vocab x hidden) table this layer equals, computed; writes to it are lost."""
        return self[0].weight @ self[1].weight.t()


def oriented(module: nn.Module) -> torch.Tensor:
    """The weight as (out, in): a Linear's, a Conv1D's transposed, an Embedding's table transposed (hidden x vocab,
    the Linear a one-hot token would go through)."""
    return module.weight.t() if isinstance(module, nn.Embedding) else oriented_weight(module)


def in_out(module: nn.Module) -> tuple[int, int]:
    out_features, in_features = oriented(module).shape
    return in_features, out_features


def block_prefix(model: nn.Module) -> str:
    """The module-name prefix of the transformer blocks, e.g. 'model.layers.' or 'bert.encoder.layer.'."""
    parent, attr, _ = find_layer_list(model)
    prefix = next(name for name, module in model.named_modules() if module is parent)
    return f"{prefix}.{attr}." if prefix else f"{attr}."


def target_modules(model: nn.Module, pattern: str | None = None, embeddings: bool = False) -> dict[str, nn.Module]:
    """The Linear (or Conv1D) layers to factorize, by name: those inside the transformer blocks, or those whose
    name `pattern` (a regex) finds anywhere; plus the word embeddings if asked. Factors of an earlier factorization
    are never targeted again."""
    factorized = (FactorizedLinear, FactorizedEmbedding)
    inside_factors = {f"{name}.{child}" for name, m in model.named_modules() if isinstance(m, factorized)
                      for child in ("0", "1")}  # fmt: skip
    candidates = {n: m for n, m in model.named_modules() if is_projection(m) and n not in inside_factors}
    if pattern is None:
        stack = block_prefix(model)
        chosen = {n: m for n, m in candidates.items() if n.startswith(stack)}
    else:
        regex = re.compile(pattern)
        chosen = {n: m for n, m in candidates.items() if regex.search(n)}
    if not chosen:
        raise UsageError(
            f"No Linear layers match --modules {pattern!r} in this model."
            if pattern
            else "This model has no Linear layers inside its transformer blocks to factorize."
        )
    if embeddings:
        chosen.update(word_embeddings(model))
    return chosen


def word_embeddings(model: nn.Module) -> dict[str, nn.Embedding]:
    """{name: the input word embeddings}, refused when they are already factorized or tied to the output layer."""
    table = model.get_input_embeddings()
    if type(table) is not nn.Embedding:  # a subclass (Gemma's scaled embedding) computes more than a lookup
        raise UsageError(f"The word embeddings are a {type(table).__name__}, not a plain nn.Embedding to factorize.")
    output = model.get_output_embeddings()
    if output is not None and getattr(output, "weight", None) is table.weight:
        raise UsageError(
            "The word embeddings are tied to the output layer (lm_head), so --factorize-embeddings cannot change "
            "them alone."
        )
    return {next(name for name, m in model.named_modules() if m is table): table}


def shapes_of(modules: dict[str, nn.Module]) -> dict[str, tuple[int, int]]:
    """{name: (in_features, out_features)}."""
    return {name: in_out(module) for name, module in modules.items()}


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)


@torch.no_grad()
def factorized_from(module: nn.Module, first: torch.Tensor, second: torch.Tensor) -> nn.Sequential:
    """A FactorizedLinear with weights `first` (r x in) and `second` (out x r) and the bias of `module`; for an
    Embedding, a FactorizedEmbedding whose table is first^T (vocab x r)."""
    weight = module.weight
    if isinstance(module, nn.Embedding):
        layer = FactorizedEmbedding(first.shape[1], first.shape[0], second.shape[0], weight.device, weight.dtype)
        layer[0].weight.copy_(first.t())
        layer[1].weight.copy_(second)
        return layer.train(module.training)
    layer = FactorizedLinear(first.shape[1], first.shape[0], second.shape[0], module.bias is not None,
                             device=weight.device, dtype=weight.dtype)  # fmt: skip
    layer[0].weight.copy_(first)
    layer[1].weight.copy_(second)
    if module.bias is not None:
        layer[1].bias.copy_(module.bias)
    layer.train(module.training)
    return layer


def swap_in(model: nn.Module, ranks: dict[str, int]) -> None:
    """Replace each listed Linear (Embedding) by an empty FactorizedLinear (FactorizedEmbedding) of its shape and
    rank, on the same device (meta inside `from_pretrained`), for the saved factors to load into."""
    for name, rank in ranks.items():
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise UsageError(f"The factorization lists '{name}', which this model does not have.") from None
        weight = getattr(module, "weight", None)
        if type(module) is nn.Embedding:
            vocab, hidden = weight.shape
            set_module(model, name, FactorizedEmbedding(vocab, int(rank), hidden, weight.device, weight.dtype))
            continue
        if not is_projection(module):
            raise UsageError(f"The factorization lists '{name}', which is a {type(module).__name__}, not a Linear.")
        in_features, out_features = in_out(module)
        set_module(model, name, FactorizedLinear(in_features, int(rank), out_features, module.bias is not None,
                                                 device=weight.device, dtype=weight.dtype))  # fmt: skip
