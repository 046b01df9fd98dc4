"""Truncated SVD of a Linear layer's weight, plain or whitened by its inputs, and the choice of ranks.

Pure functions of tensors. A weight W (out x in) is replaced by `second @ first`, first = V_r^T (r x in) and
second = U_r S_r (out x r): r * (in + out) parameters instead of in * out, worth it only when fewer.

Whitened (SVD-LLM, Wang et al. 2024, arXiv:2403.07378): with L the Cholesky factor of the layer inputs' Gram
matrix X^T X = L L^T, the output error ||X (W - W')^T||_F equals ||(W - W') L||_F, so truncating the SVD of W L
gives the rank-r W' closest to W on those inputs: W' = U_r S_r (V_r^T L^{-1}). Its singular values measure output
energy, so --energy keeps a fraction of the layer's output energy on the calibration data.
"""

from __future__ import annotations

import torch

from ..errors import UsageError


def factorized_parameters(in_features: int, out_features: int, rank: int) -> int:
    return rank * (in_features + out_features)


def saves_parameters(in_features: int, out_features: int, rank: int) -> bool:
    return 0 < rank and factorized_parameters(in_features, out_features, rank) < in_features * out_features


def largest_useful_rank(in_features: int, out_features: int) -> int:
    """The largest rank that still stores fewer parameters than the dense weight (0: none does)."""
    return (in_features * out_features - 1) // (in_features + out_features)


def whitening(gram: torch.Tensor, dampening: float) -> torch.Tensor:
    """Lower Cholesky factor of gram + dampening x mean(diag) x I, in float64 (identity for all-zero inputs)."""
    gram = gram.double()
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    mean = gram.diagonal().mean().item()
    if mean <= 0:
        return eye
    damp = dampening * mean
    for _ in range(8):  # rounding can leave a nearly singular Gram matrix just short of positive definite
        factor, info = torch.linalg.cholesky_ex(gram + damp * eye)
        if info.item() == 0:
            return factor
        damp *= 10
    raise UsageError("The calibration inputs' X^T X has no Cholesky factor even with dampening; raise --dampening.")


def decompose(weight: torch.Tensor, white: torch.Tensor | None = None):
    """(U, S, Vh) of W, or of W L when whitened; float64."""
    target = weight.double() if white is None else weight.double() @ white
    return torch.linalg.svd(target, full_matrices=False)


def spectrum(weight: torch.Tensor, white: torch.Tensor | None = None) -> torch.Tensor:
    target = weight.double() if white is None else weight.double() @ white
    return torch.linalg.svdvals(target)


def truncate(u, s, vh, rank: int, white: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, second), r x in and out x r, with second @ first the rank-r approximation; float64."""
    first = vh[:rank]
    if white is not None:  # V_r^T L^{-1}: solve X L = V_r^T, L lower triangular
        first = torch.linalg.solve_triangular(white, first, upper=False, left=False)
    return first, u[:, :rank] * s[:rank]


def kept_energy(singular_values: torch.Tensor, rank: int) -> float:
    squared = singular_values.double() ** 2
    total = squared.sum().item()
    return squared[:rank].sum().item() / total if total > 0 else 1.0


def rank_for_energy(singular_values: torch.Tensor, energy: float) -> int:
    """The fewest singular values (at least 1) whose squares hold `energy` of the total."""
    squared = singular_values.double() ** 2
    total = squared.sum()
    if total <= 0:
        return 1
    fractions = squared.cumsum(0) / total
    return min(int((fractions < energy - 1e-12).sum().item()) + 1, len(singular_values))


def relative_error(weight: torch.Tensor, first: torch.Tensor, second: torch.Tensor, gram=None) -> float:
    """||(W - W') X^T|| / ||W X^T|| from the Gram matrix X^T X of the inputs; without one, ||W - W'|| / ||W||."""
    weight = weight.double()
    diff = weight - second.double() @ first.double()
    if gram is None:
        norm = weight.norm().item()
        return diff.norm().item() / norm if norm else 0.0
    gram = gram.double()
    denominator = ((weight @ gram) * weight).sum().item()
    numerator = max(((diff @ gram) * diff).sum().item(), 0.0)
    return (numerator / denominator) ** 0.5 if denominator > 0 else 0.0


def minimum_parameters(shapes: dict[str, tuple[int, int]]) -> int:
    """Weight parameters of the targeted layers at rank 1 (dense where no rank saves parameters)."""
    return sum(factorized_parameters(i, o, 1) if largest_useful_rank(i, o) else i * o for i, o in shapes.values())


def allocate_ranks(
    spectra: dict[str, torch.Tensor], shapes: dict[str, tuple[int, int]], budget: int
) -> dict[str, int]:
    """Ranks that fit `budget` weight parameters, greedily by energy gain per parameter across all layers.

    Every layer starts at rank 1; then singular values are added in order of (share of their layer's energy) /
    (parameters one more rank costs, in + out) while they fit. Within a layer the gains fall with the index, so a
    layer always keeps its leading values. A rank never passes the largest one that still saves parameters.
    Layers no rank can shrink stay dense (rank 0 here) and their weights count against the budget.
    """
    ranks = {name: 1 if largest_useful_rank(*shapes[name]) else 0 for name in spectra}
    used = minimum_parameters({name: shapes[name] for name in spectra})
    if used > budget:
        raise UsageError(f"A budget of {budget:,} weights is below the {used:,} that rank 1 in every layer needs.")
    candidates = []
    for name, values in spectra.items():
        in_features, out_features = shapes[name]
        squared = values.double() ** 2
        total = squared.sum().item() or 1.0
        cost = in_features + out_features
        for index in range(1, min(largest_useful_rank(in_features, out_features), len(values))):
            candidates.append((-squared[index].item() / total / cost, name, index))
    candidates.sort()
    for _, name, index in candidates:
        cost = sum(shapes[name])
        if index == ranks[name] and used + cost <= budget:
            ranks[name] = index + 1
            used += cost
    return ranks
