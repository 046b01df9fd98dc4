"""One-shot pruning of one weight matrix from calibration statistics: magnitude, Wanda and SparseGPT.

Pure functions on an (out, in) weight. `n_m` is (n, m): keep n weights in every m consecutive inputs
(2:4, 4:8); None means unstructured at `sparsity`.

- magnitude: the smallest |W| across the whole matrix (the layer-wise baseline of the Wanda paper).
- Wanda (Sun et al., 2023): score |W_ij| * ||X_j||_2, compared within each output row.
- SparseGPT (Frantar & Alistarh, 2023): column by column, choose the weights with the smallest
  w^2 / [H^-1]_jj and move their error onto the columns not yet visited (the OBS update), using the
  upper Cholesky factor of the inverse Hessian H = 2 X X^T / n, blocks of columns at a time.
"""

from __future__ import annotations

import torch

from .masks import _smallest_k_mask


def parse_n_m(structure: str) -> tuple[int, int] | None:
    """(n, m) for "n:m", None for anything else."""
    parts = structure.split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1])


def row_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask dropping the `sparsity` fraction of smallest scores in every row."""
    k = round(sparsity * scores.shape[1])
    keep = torch.ones_like(scores, dtype=torch.bool)
    if k:
        keep.scatter_(1, scores.argsort(dim=1, stable=True)[:, :k], False)
    return keep


def n_m_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep-mask keeping the n largest scores in every group of m consecutive inputs."""
    groups = scores.reshape(scores.shape[0], -1, m)
    keep = torch.ones_like(groups, dtype=torch.bool)
    keep.scatter_(2, groups.argsort(dim=2, stable=True)[..., : m - n], False)
    return keep.reshape(scores.shape)


def magnitude_mask(weight: torch.Tensor, sparsity: float, n_m: tuple[int, int] | None = None) -> torch.Tensor:
    scores = weight.detach().abs().float()
    if n_m:
        return n_m_mask(scores, *n_m)
    return _smallest_k_mask(scores, round(sparsity * scores.numel()))


def wanda_scores(weight: torch.Tensor, input_norms: torch.Tensor) -> torch.Tensor:
    """|W_ij| * ||X_j||_2, where `input_norms[j]` is the L2 norm of input feature j over calibration tokens."""
    return weight.detach().abs().float() * input_norms.float().reshape(1, -1)


def wanda_mask(
    weight: torch.Tensor, input_norms: torch.Tensor, sparsity: float, n_m: tuple[int, int] | None = None
) -> torch.Tensor:
    scores = wanda_scores(weight, input_norms)
    return n_m_mask(scores, *n_m) if n_m else row_mask(scores, sparsity)


def _inverse_hessian_factor(hessian: torch.Tensor, dampening: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Upper Cholesky factor of (H + lambda I)^-1, lambda = dampening * mean(diag H); and the dead inputs."""
    h = hessian.clone().float()
    dead = torch.diag(h) == 0  # inputs never active in calibration: their weights are pruned first
    h[dead, dead] = 1.0
    h.diagonal().add_(dampening * torch.diag(h).mean())
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(inverse, upper=True), dead


@torch.no_grad()
def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float,
    n_m: tuple[int, int] | None = None,
    block_size: int = 128,
    dampening: float = 0.01,
) -> torch.Tensor:
    """The pruned weight (same shape and dtype): zeros where pruned, the rest updated to compensate."""
    w = weight.detach().clone().float()
    rows, columns = w.shape
    factor, dead = _inverse_hessian_factor(hessian.to(w.device), dampening)
    w[:, dead] = 0
    for start in range(0, columns, block_size):
        end = min(start + block_size, columns)
        block = w[:, start:end].clone()
        inv = factor[start:end, start:end]
        diag = torch.diag(inv)
        errors = torch.zeros_like(block)
        pruned = torch.zeros_like(block, dtype=torch.bool)
        if n_m is None:
            saliency = block.pow(2) / diag.pow(2).reshape(1, -1)
            pruned = ~_smallest_k_mask(saliency, round(sparsity * saliency.numel()))
        for i in range(end - start):
            if n_m is not None and i % n_m[1] == 0:
                n, m = n_m
                saliency = block[:, i : i + m].pow(2) / diag[i : i + m].pow(2).reshape(1, -1)
                drop = saliency.argsort(dim=1, stable=True)[:, : m - n]
                pruned[:, i : i + m].scatter_(1, drop, True)
            column = block[:, i]
            kept = torch.where(pruned[:, i], torch.zeros_like(column), column)
            error = (column - kept) / inv[i, i]
            block[:, i:] -= error.reshape(-1, 1) * inv[i, i:].reshape(1, -1)
            block[:, i] = kept  # exact zero where pruned, not a float remainder
            errors[:, i] = error
        w[:, start:end] = block
        w[:, end:] -= errors @ factor[start:end, end:]
    return w.to(weight.dtype)
