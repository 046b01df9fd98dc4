import math

import pytest
import torch

from hfcompress.distillation import losses


def test_soft_target_kl_matches_hand_computation():
    # Teacher p = softmax([ln 3, 0]) = [0.75, 0.25], student q = [0.5, 0.5]:
    # KL(p || q) = 0.75 ln 1.5 + 0.25 ln 0.5 = 0.130812.
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    assert losses.soft_target_kl(student, teacher, 1.0).item() == pytest.approx(0.130812, abs=1e-5)
    # At T = 2 the teacher logits [2 ln 3, 0] soften to the same p; the T^2 factor multiplies by 4.
    teacher_t2 = torch.tensor([[2 * math.log(3.0), 0.0]])
    assert losses.soft_target_kl(student, teacher_t2, 2.0).item() == pytest.approx(4 * 0.130812, abs=1e-5)


def test_soft_target_kl_is_batch_mean_and_zero_for_equal_logits():
    logits = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
    assert losses.soft_target_kl(logits, logits, 3.0).item() == pytest.approx(0.0, abs=1e-7)
    one = losses.soft_target_kl(torch.zeros(1, 2), torch.tensor([[math.log(3.0), 0.0]]), 1.0)
    two = losses.soft_target_kl(torch.zeros(2, 2), torch.tensor([[math.log(3.0), 0.0]] * 2), 1.0)
    assert two.item() == pytest.approx(one.item())


def test_hard_label_loss_cross_entropy_and_regression():
    assert losses.hard_label_loss(torch.zeros(1, 2), torch.tensor([1])).item() == pytest.approx(math.log(2))
    # Regression head (one output): MSE of [1, 3] against [2, 2] = (1 + 1) / 2.
    value = losses.hard_label_loss(torch.tensor([[1.0], [3.0]]), torch.tensor([2.0, 2.0]))
    assert value.item() == pytest.approx(1.0)


def test_soft_target_mse():
    value = losses.soft_target_mse(torch.tensor([[0.0], [2.0]]), torch.tensor([[1.0], [0.0]]))
    assert value.item() == pytest.approx((1 + 4) / 2)


def test_hidden_state_mse_ignores_padding():
    student = torch.zeros(1, 2, 2)
    teacher = torch.tensor([[[1.0, 1.0], [3.0, 3.0]]])
    # Per-token MSE is [1, 9]; the second token is padding.
    assert losses.hidden_state_mse(student, teacher, torch.tensor([[1, 0]])).item() == pytest.approx(1.0)
    assert losses.hidden_state_mse(student, teacher).item() == pytest.approx(5.0)


def test_hidden_state_cosine():
    orthogonal = losses.hidden_state_cosine(torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 1.0]]]))
    parallel = losses.hidden_state_cosine(torch.tensor([[[1.0, 1.0]]]), torch.tensor([[[2.0, 2.0]]]))
    opposite = losses.hidden_state_cosine(torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[-3.0, 0.0]]]))
    assert orthogonal.item() == pytest.approx(1.0)
    assert parallel.item() == pytest.approx(0.0, abs=1e-6)
    assert opposite.item() == pytest.approx(2.0)


def test_attention_mse_same_and_different_head_counts():
    assert losses.attention_mse(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)).item() == pytest.approx(1.0)
    # Query 2 is padding: its error (4.0) is ignored, leaving query 1's 1.0.
    teacher = torch.tensor([[[[1.0, 1.0], [2.0, 2.0]]]])
    masked = losses.attention_mse(torch.zeros(1, 1, 2, 2), teacher, torch.tensor([[1, 0]]))
    assert masked.item() == pytest.approx(1.0)
    # Two student heads (0 and 1) average to 0.5, which is the single teacher head: no loss.
    student = torch.stack([torch.zeros(2, 2), torch.ones(2, 2)]).unsqueeze(0)
    assert losses.attention_mse(student, torch.full((1, 1, 2, 2), 0.5)).item() == pytest.approx(0.0)


def test_token_losses_weight_examples_equally():
    # Example 1 has one real token (error 1), example 2 two tokens (error 4 each): mean of [1, 4] = 2.5,
    # not the token-weighted (1 + 4 + 4) / 3 = 3, so that accumulated half-batches add up to the full batch.
    student = torch.zeros(2, 2, 1)
    teacher = torch.tensor([[[1.0], [3.0]], [[2.0], [2.0]]])
    mask = torch.tensor([[1, 0], [1, 1]])
    assert losses.hidden_state_mse(student, teacher, mask).item() == pytest.approx(2.5)
