"""Partial quantization: which layers stay in full precision, by name (`--exclude REGEX`) or by a scan.

Layers are named as PyTorch names its modules (`bert.encoder.layer.3.output.dense`), whatever the backend:
bitsandbytes and torchao skip those modules at load; for ONNX Runtime the exported graph's nodes carry the
module path in their names (`/model/bert/encoder/layer.3/output/dense/MatMul`), so a module maps to the nodes
that read its weight, which the quantizer is told to leave alone.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from ..errors import UsageError

# Node types ONNX Runtime's int8 quantizers rewrite when one input is a weight (an initializer); Gemm (the
# pooler and classifier) is left in fp32 by both of our methods.
ONNX_WEIGHT_OPS = ("MatMul", "Gather", "Attention", "EmbedLayerNormalization")
_WRAPPER = "/model/"  # export_onnx wraps the model in a module whose attribute is `model`


def empty_model(model_name: str, trust_remote_code: bool = False):
    """The model's modules with no weights in memory (meta tensors), for reading names and shapes."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig

    from ..models import auto_class_for

    config = AutoConfig.from_pretrained(model_name, trust_remote_code=trust_remote_code)
    if getattr(config, "hfcompress_factorized", None):  # factorized layers are built by load_model, with weights
        from ..factorization.loading import load_model

        return load_model(model_name)
    with init_empty_weights(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return auto_class_for(config).from_config(config, trust_remote_code=trust_remote_code)


def quantizable_names(model) -> list[str]:
    """Names of the modules a quantizer can convert: Linear (and GPT-2's Conv1D) layers and embeddings."""
    from transformers.pytorch_utils import Conv1D

    kinds = (torch.nn.Linear, torch.nn.Embedding, Conv1D)
    return [name for name, module in model.named_modules() if name and isinstance(module, kinds)]


def resolve_exclusions(model_name: str, config, trust_remote_code: bool = False) -> list[str]:
    """The module names `config.exclude` selects, added to `config.excluded_modules`; a regex that selects
    nothing in this model is refused before any work."""
    if config.exclude is None or getattr(config, "_exclude_resolved", None) == (config.exclude, model_name):
        return list(config.excluded_modules)  # nothing to resolve, or already done (run_quantize, then quantize)
    model = empty_model(model_name, trust_remote_code)
    names = quantizable_names(model)
    pattern = re.compile(config.exclude)
    matched = [name for name in names if pattern.search(name)]
    if not matched:
        raise UsageError(
            f"--exclude '{config.exclude}' matches no Linear or embedding layer of '{model_name}' "
            f"(names look like '{names[len(names) // 2] if names else 'encoder.layer.0.output.dense'}')."
        )
    config.excluded_modules = sorted(set(config.excluded_modules) | set(matched))
    config._exclude_resolved = (config.exclude, model_name)
    return config.excluded_modules


def node_module(node_name: str) -> str:
    """The PyTorch module path an exported node came from (`/model/a/b.0/c/MatMul` -> `a.b.0.c`), or the node
    name itself for nodes that have none (fused by the optimizer)."""
    if not node_name.startswith(_WRAPPER):
        return node_name
    return node_name[len(_WRAPPER) :].rsplit("/", 1)[0].replace("/", ".")


def onnx_weight_nodes(path: str | Path) -> dict[str, str]:
    """{node name: module name} for the graph's nodes a quantizer would rewrite: those reading a weight."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    weights = {init.name for init in model.graph.initializer}
    return {node.name: node_module(node.name) for node in model.graph.node if _reads_weight(node, weights)}


def _reads_weight(node, weights: set[str]) -> bool:
    """Whether the quantizer would rewrite `node`: a MatMul or fused Attention whose second input is a weight,
    a Gather from a weight table (not one picking positions from a tensor), an embedding layer."""
    if node.op_type in ("MatMul", "Attention"):
        return len(node.input) > 1 and node.input[1] in weights
    if node.op_type == "Gather":
        return node.input[0] in weights
    return node.op_type in ONNX_WEIGHT_OPS and any(name in weights for name in node.input)


def nodes_for_modules(nodes: dict[str, str], modules) -> list[str]:
    """The nodes (of `onnx_weight_nodes`) that belong to any of `modules` (module names, or node names of
    fused nodes)."""
    modules = set(modules)
    return sorted(node for node, module in nodes.items() if module in modules)


def missing_nodes(nodes: dict[str, str], modules, linear_names) -> list[str]:
    """The Linear layers among `modules` that no weight node of the graph carries (fused into another node)."""
    present = set(nodes.values())
    return sorted(m for m in modules if m in set(linear_names) and m not in present)


def check_nodes_found(nodes: dict[str, str], modules, linear_names) -> None:
    """Refuse exclusions the graph cannot honour: Linear layers that ONNX Runtime fused into another node."""
    missing = missing_nodes(nodes, modules, linear_names)
    if missing:
        raise UsageError(
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} were fused into ONNX Runtime's attention "
            "node, so they cannot be kept in fp32 alone; pass --optimize false to keep the layers separate."
        )
