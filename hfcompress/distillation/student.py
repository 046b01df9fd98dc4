"""Building a shallower student from a teacher by keeping some of its layers (DistilBERT's initialisation)."""

from __future__ import annotations

import copy

from torch import nn

from ..architecture import find_layer_list, num_layers
from ..errors import UsageError


def parse_student_layers(spec: str | int | list[int], teacher_layers: int) -> list[int]:
    """Turn "6" (keep 6 evenly spaced layers) or "0,2,4,7,9,11" (keep these) into sorted layer indices."""
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        if not parts or not all(p.lstrip("-").isdigit() for p in parts):
            raise UsageError(f"--student-layers must be a count like 6 or a list like 0,2,4, not '{spec}'.")
        spec = int(parts[0]) if len(parts) == 1 else [int(p) for p in parts]
    if isinstance(spec, int):
        if not 1 <= spec <= teacher_layers:
            raise UsageError(f"--student-layers {spec} must be between 1 and the teacher's {teacher_layers} layers.")
        if spec == 1:
            return [teacher_layers - 1]
        # Evenly spaced and always keeping the first and last layer: 12 -> 6 gives 0,2,4,7,9,11.
        return [int(i * (teacher_layers - 1) / (spec - 1) + 0.5) for i in range(spec)]
    layers = sorted(set(spec))
    if len(layers) != len(spec) or layers[0] < 0 or layers[-1] >= teacher_layers:
        raise UsageError(
            f"--student-layers {','.join(map(str, spec))} must list distinct layers between 0 and "
            f"{teacher_layers - 1}."
        )
    return layers


def build_student_from_teacher(teacher: nn.Module, layers: list[int]) -> nn.Module:
    """Copy the teacher, keeping only `layers` of its transformer stack, with the config updated to match.

    The result saves and loads with plain `from_pretrained`.
    """
    student = copy.deepcopy(teacher)
    parent, attr, stack = find_layer_list(student)
    kept = nn.ModuleList([stack[i] for i in layers])
    setattr(parent, attr, kept)
    config = student.config
    config.num_hidden_layers = len(layers)  # DistilBERT maps this onto n_layers through its attribute_map
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [config.layer_types[i] for i in layers]
    # Decoder blocks index their KV cache by `layer_idx`; renumber so the cache has no gaps.
    for new_index, block in enumerate(kept):
        for module in block.modules():
            if isinstance(getattr(module, "layer_idx", None), int):
                module.layer_idx = new_index
    if num_layers(config) != len(layers):
        raise UsageError(f"Could not set the layer count of a '{config.model_type}' config.")
    return student
