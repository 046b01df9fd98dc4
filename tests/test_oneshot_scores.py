"""Magnitude, Wanda and SparseGPT on single matrices, against hand-computed cases."""

import pytest
import torch

from hfcompress.pruning.calibration import InputStatistics
from hfcompress.pruning.oneshot_scores import (
    magnitude_mask,
    n_m_mask,
    parse_n_m,
    sparsegpt_prune,
    wanda_mask,
    wanda_scores,
)


def test_wanda_weighs_magnitude_by_input_norm():
    weight = torch.tensor([[1.0, -2.0, 3.0, -4.0]])
    norms = torch.tensor([4.0, 1.0, 1.0, 0.25])
    assert wanda_scores(weight, norms).tolist() == [[4.0, 2.0, 3.0, 1.0]]
    assert wanda_mask(weight, norms, 0.5).tolist() == [[True, False, True, False]]
    # Magnitude alone keeps the two largest weights instead.
    assert magnitude_mask(weight, 0.5).tolist() == [[False, False, True, True]]


def test_wanda_compares_within_each_row():
    weight = torch.tensor([[10.0, 20.0, 30.0, 40.0], [1.0, 2.0, 3.0, 4.0]])
    keep = wanda_mask(weight, torch.ones(4), 0.5)
    assert keep.tolist() == [[False, False, True, True], [False, False, True, True]]
    # Layer-wise magnitude would empty the second row.
    assert magnitude_mask(weight, 0.5)[1].sum() == 0


def test_sparsegpt_moves_the_error_onto_the_kept_weight():
    # H = [[2, 1], [1, 2]]: pruning w0 = 1 is cheapest (saliency w^2 / [H^-1]_00 = 1.5 against 8), and the OBS
    # update adds -w0 * [H^-1]_01 / [H^-1]_00 = 0.5 to w1. Minimising (d W) H (d W)^T with w0' = 0 gives the same.
    weight = torch.tensor([[1.0, 2.0]])
    hessian = torch.tensor([[2.0, 1.0], [1.0, 2.0]])
    pruned = sparsegpt_prune(weight, hessian, 0.5, dampening=0.0)
    torch.testing.assert_close(pruned, torch.tensor([[0.0, 2.5]]))
    assert pruned[0, 0].item() == 0.0  # an exact zero


def test_sparsegpt_with_identity_hessian_is_magnitude_pruning():
    torch.manual_seed(0)
    weight = torch.randn(6, 16)
    pruned = sparsegpt_prune(weight, torch.eye(16), 0.5, dampening=0.0, block_size=4)
    keep = pruned != 0
    assert keep.sum() == 48
    torch.testing.assert_close(pruned, weight * keep)  # no updates: the inputs are uncorrelated
    for start in range(0, 16, 4):  # within each block of columns, the smallest magnitudes go
        block, kept = weight[:, start : start + 4].abs(), keep[:, start : start + 4]
        assert kept.sum() == 12 and block[~kept].max() <= block[kept].min()


def test_sparsegpt_reconstructs_outputs_better_than_wanda_and_magnitude():
    torch.manual_seed(0)
    scales = torch.logspace(-1, 1, 32)
    inputs = torch.randn(512, 32) @ torch.randn(32, 32) * 0.3 * scales  # correlated features of varied scale
    weight = torch.randn(16, 32)
    stats = InputStatistics(torch.nn.Linear(32, 16), hessian=True)
    stats.add(inputs[:300])
    stats.add(inputs[300:])

    def error(w):
        return ((weight - w) @ inputs.t()).norm().item()

    magnitude = error(weight * magnitude_mask(weight, 0.5))
    wanda = error(weight * wanda_mask(weight, stats.input_norms, 0.5))
    sparsegpt = error(sparsegpt_prune(weight, stats.hessian, 0.5))  # one block: sparsity spread freely
    assert sparsegpt < wanda < magnitude


def test_input_statistics_match_a_direct_computation_and_skip_padding():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    stats = InputStatistics(torch.nn.Linear(8, 3), hessian=True)
    stats.token_mask = mask[:1].bool()
    stats.add(x[:1])
    stats.token_mask = mask[1:].bool()
    stats.add(x[1:])
    real = x[mask.bool()]
    assert stats.tokens == 8
    torch.testing.assert_close(stats.input_norms, real.norm(dim=0))
    torch.testing.assert_close(stats.hessian, 2 * real.t() @ real / 8)


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4)])
def test_n_m_patterns_are_exact(n, m):
    torch.manual_seed(0)
    weight = torch.randn(8, 32)
    hessian = (lambda x: 2 * x.t() @ x / 64)(torch.randn(64, 32))
    masks = {
        "magnitude": magnitude_mask(weight, 0.0, (n, m)),
        "wanda": wanda_mask(weight, torch.rand(32) + 0.1, 0.0, (n, m)),
        "sparsegpt": sparsegpt_prune(weight, hessian, 0.0, (n, m), block_size=16) != 0,
    }
    for name, keep in masks.items():
        kept_per_group = keep.reshape(8, -1, m).sum(dim=2)
        assert (kept_per_group == n).all(), name


def test_n_m_mask_keeps_the_largest_in_each_group():
    scores = torch.tensor([[4.0, 1.0, 3.0, 2.0, 0.1, 0.4, 0.3, 0.2]])
    assert n_m_mask(scores, 2, 4).tolist() == [[True, False, True, False, False, True, True, False]]


def test_sparsegpt_zeroes_inputs_never_seen_in_calibration():
    weight = torch.ones(2, 4)
    hessian = torch.diag(torch.tensor([1.0, 1.0, 0.0, 1.0]))
    pruned = sparsegpt_prune(weight, hessian, 0.25, block_size=4)
    assert (pruned[:, 2] == 0).all() and (pruned != 0).sum() == 6


def test_parse_n_m():
    assert parse_n_m("2:4") == (2, 4) and parse_n_m("4:8") == (4, 8)
    assert parse_n_m("unstructured") is None and parse_n_m("2:x") is None
